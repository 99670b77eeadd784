//! The texts the embedding and encode workloads run on.

/// 32 on-device assistant requests of everyday length.
pub const SENTENCES: [&str; 32] = [
    "Turn on the living room lights.",
    "Set an alarm for 6:30 tomorrow morning.",
    "What's the weather like in Paris today?",
    "Play some relaxing jazz music in the kitchen.",
    "Remind me to buy milk when I leave work.",
    "Send a message to Alex saying I'm running late.",
    "How long will it take to drive to the airport right now?",
    "Turn the thermostat down by two degrees.",
    "Add eggs, flour and butter to my shopping list.",
    "What is on my calendar for Friday afternoon?",
    "Call my sister on speaker.",
    "Skip to the next song and turn the volume up.",
    "Translate good night into Japanese.",
    "Start a timer for twelve minutes.",
    "Is it going to rain during my run this evening?",
    "Lock the front door and close the garage.",
    "Read me the latest headlines about the election.",
    "Book a table for four at an Italian restaurant nearby.",
    "How many steps have I walked today?",
    "Dim the bedroom lights to thirty percent.",
    "What time does the pharmacy on Main Street close?",
    "Find photos from our trip to the mountains last summer.",
    "Turn off all the lights downstairs at midnight.",
    "Convert fifty dollars to euros.",
    "Open the navigation and avoid toll roads.",
    "Who won the football match last night?",
    "Pause the podcast and resume it in the car.",
    "Set the oven to preheat at 200 degrees.",
    "Tell me a joke about programmers.",
    "What's the capital of Australia?",
    "Show my heart rate over the last week.",
    "Email the quarterly report to the finance team.",
];

/// The first `n` training sentences of the shipped intent data.
pub fn intent_texts(n: usize) -> Result<Vec<String>, String> {
    let path = "data/intents/train.jsonl";
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{path}: {e} (run from the repository root)"))?;
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["text"].as_str().map(str::to_string))
        .take(n)
        .collect())
}
