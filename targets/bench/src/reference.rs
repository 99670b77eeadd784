//! The PyTorch side of every benchmark: a script of `tools/reference/` run
//! with `python3` in its own process, printing its results as JSON.

use std::fmt::Display;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// A script of `tools/reference/` and the packages it imports.
pub struct TorchSide<'a> {
    /// The script.
    pub script: &'a Path,
    /// What it imports, named when it fails.
    pub needs: &'a str,
}

impl TorchSide<'_> {
    /// Runs the script with `args`, `stdin` written to it and `env` set;
    /// what it printed, as JSON.
    pub fn run(
        &self,
        args: &[String],
        stdin: Option<&str>,
        env: &[(&str, &str)],
    ) -> Result<serde_json::Value, String> {
        let script = self.script.display();
        let failed = |e: std::io::Error| format!("python3 {script}: {e}");
        let mut child = Command::new("python3")
            .arg(self.script)
            .args(args)
            .envs(env.iter().copied())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(failed)?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(text.as_bytes()).map_err(failed)?;
        }
        let out = child.wait_with_output().map_err(failed)?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            return Err(format!(
                "{script} failed ({} from tools/reference/requirements.txt are needed): {}",
                self.needs,
                stderr.lines().last().unwrap_or("")
            ));
        }
        serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("{script}: its output is not JSON: {e}"))
    }
}

/// `--name value`, as the scripts take their options.
pub fn arg(name: &str, value: impl Display) -> [String; 2] {
    [name.to_string(), value.to_string()]
}
