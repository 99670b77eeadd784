#!/usr/bin/env python3
"""Writes data/intents/{train,test}.jsonl: on-device assistant commands
labelled with one of eight intents, for `ember finetune`'s built-in task.

Each intent has hand-written phrasings with slots; the script fills the slots
from fixed lists with a fixed seed, de-duplicates, and splits the phrasings
(not just the filled sentences) between train and test, so the held-out set
holds wordings the model never saw. Usage: python tools/data/make_intents.py
"""

import json
import os
import random

random.seed(7)
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")

ROOMS = ["kitchen", "living room", "bedroom", "bathroom", "hallway", "office", "garage", "kids' room"]
TIMES = ["6:30", "seven", "7 am", "half past eight", "noon", "10 pm", "5:45 tomorrow", "nine thirty"]
CITIES = ["Paris", "Berlin", "Tokyo", "Madrid", "London", "Oslo", "Lagos", "Lima", "Seoul", "Denver"]
ARTISTS = ["some jazz", "the Beatles", "relaxing piano", "my workout playlist", "lo-fi beats", "Beyoncé", "classical music", "the news podcast"]
PEOPLE = ["mom", "Alex", "my sister", "Dr. Patel", "the office", "grandpa", "Sam", "my boss"]
ITEMS = ["milk", "eggs", "batteries", "coffee beans", "dog food", "bread", "tomatoes", "printer paper"]
TEMPS = ["19", "20", "21", "22", "18", "23"]
MINUTES = ["five", "ten", "12", "twenty", "3", "forty-five", "90", "two"]

INTENTS = {
    "lights": [
        "turn on the {room} lights", "switch off the lights in the {room}", "dim the {room} lights",
        "lights on in the {room} please", "can you make the {room} brighter", "kill the lights in the {room}",
        "set the {room} lamp to fifty percent", "it's too dark in the {room}", "turn every light off",
        "brighten the {room} a bit", "the {room} light is still on, switch it off", "lamp on",
    ],
    "alarm": [
        "set an alarm for {time}", "wake me up at {time}", "alarm at {time} please",
        "I need to get up at {time}", "cancel my {time} alarm", "move my alarm to {time}",
        "make sure I'm awake by {time}", "snooze the alarm", "add a wake-up call for {time}",
        "turn off tomorrow's alarm", "ring me at {time}", "alarm for {time} on weekdays",
    ],
    "weather": [
        "what's the weather in {city}", "will it rain in {city} today", "how hot is it in {city}",
        "do I need an umbrella", "weather forecast for {city} this weekend", "is it snowing in {city}",
        "how cold will it be tonight", "what's the temperature outside", "any storms coming to {city}",
        "should I wear a jacket today", "is it sunny in {city} right now", "wind speed in {city}",
    ],
    "music": [
        "play {artist}", "put on {artist}", "skip this song", "pause the music",
        "turn the music up", "I want to hear {artist}", "next track", "shuffle {artist}",
        "play something calm", "stop the song", "resume {artist}", "music in the {room}",
    ],
    "call": [
        "call {person}", "phone {person}", "dial {person} on speaker", "ring {person}",
        "start a video call with {person}", "get {person} on the line", "call {person} back",
        "hang up", "facetime {person}", "can you call {person} for me", "redial the last number",
        "I need to talk to {person}",
    ],
    "shopping": [
        "add {item} to my shopping list", "put {item} on the list", "we're out of {item}",
        "remind me to buy {item}", "what's on my shopping list", "remove {item} from the list",
        "I need {item}", "order more {item}", "clear the shopping list", "did I add {item} already",
        "shopping list: {item}", "don't let me forget {item}",
    ],
    "thermostat": [
        "set the heating to {temp} degrees", "turn up the heat", "make it warmer in the {room}",
        "cool the house down", "thermostat to {temp}", "it's freezing in here", "lower the temperature",
        "turn the AC on", "what's the thermostat set to", "heat the {room} to {temp}",
        "switch the heating off", "I'm too hot",
    ],
    "timer": [
        "set a timer for {minutes} minutes", "start a {minutes} minute timer", "timer {minutes} minutes",
        "how much time is left on my timer", "cancel the timer", "countdown from {minutes} minutes",
        "remind me in {minutes} minutes", "pause the timer", "egg timer please",
        "set a {minutes}-minute pasta timer", "stop the countdown", "add {minutes} minutes to the timer",
    ],
}

SLOTS = {"room": ROOMS, "time": TIMES, "city": CITIES, "artist": ARTISTS, "person": PEOPLE,
         "item": ITEMS, "temp": TEMPS, "minutes": MINUTES}


def fill(template):
    out = template
    for slot, values in SLOTS.items():
        while "{" + slot + "}" in out:
            out = out.replace("{" + slot + "}", random.choice(values), 1)
    return out


def main():
    train, test = [], []
    for label, templates in INTENTS.items():
        templates = templates[:]
        random.shuffle(templates)
        held_out, seen = templates[:3], templates[3:]
        for split, temps, per in ((train, seen, 4), (test, held_out, 4)):
            rows = set()
            for t in temps:
                for _ in range(per):
                    text = fill(t)
                    if random.random() < 0.5:
                        text = text[0].upper() + text[1:]
                    if random.random() < 0.3:
                        text += random.choice(["?", ".", "!", " please", " thanks"])
                    rows.add(text)
            split.extend({"text": r, "label": label} for r in sorted(rows))
    random.shuffle(train)
    random.shuffle(test)
    out = os.path.join(ROOT, "data", "intents")
    os.makedirs(out, exist_ok=True)
    for name, rows in (("train", train), ("test", test)):
        with open(os.path.join(out, f"{name}.jsonl"), "w") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"train {len(train)}, test {len(test)}, {len(INTENTS)} intents")


if __name__ == "__main__":
    main()
