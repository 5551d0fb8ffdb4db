//! Output for people and for scripts: results on stdout, errors on stderr (or, with `--json`,
//! as the JSON result on stdout), each once.

use crate::exit::Failure;
use crate::logs::LogFormat;
use std::process::ExitCode;

/// A result as one JSON object (`--json`) or as `key: value` lines.
pub fn fields(v: &serde_json::Value, json: bool) {
    if json {
        println!("{v}");
    } else if let Some(map) = v.as_object() {
        for (k, v) in map {
            println!("{k}: {v}");
        }
    }
}

/// Says a failure once: with `--json`, as the command's JSON result on stdout
/// (`{"outcome":"failed","error":{"kind","message"}}`); otherwise in words on stderr for a
/// person, or as one JSON log line (with the whole cause chain) when the logs are JSON.
pub fn failure(f: &Failure, format: LogFormat, json: bool) -> ExitCode {
    if json {
        println!("{}", serde_json::json!({"outcome": "failed", "error": {"kind": f.kind, "message": f.words}}));
    }
    match format {
        LogFormat::Json => {
            tracing::error!(exit_code = f.exit as u8, kind = f.kind, error = %f.chain, "{}", f.words)
        }
        LogFormat::Human if !json => eprintln!("xcr: {}", f.words),
        LogFormat::Human => {}
    }
    f.exit.into()
}
