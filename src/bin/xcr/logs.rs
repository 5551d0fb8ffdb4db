//! Which log format the CLI writes: human lines for a person at a terminal, JSON lines for
//! machines (Lambda, CI, pipes, files).

use std::io::IsTerminal;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Short lines for a person: warnings, errors and notes only (`XCR_LOG` shows more).
    Human,
    /// One JSON object per event, as the functions write (CloudWatch Logs Insights, `jq`).
    Json,
}

impl LogFormat {
    /// `--log-format` (or `XCR_LOG_FORMAT`) when given; else human when stderr is a terminal,
    /// JSON when it is not, so that whatever reads a pipe or a file keeps one JSON line per
    /// event.
    pub fn choose(given: Option<Self>) -> Self {
        given.unwrap_or_else(|| if std::io::stderr().is_terminal() { Self::Human } else { Self::Json })
    }

    /// Installs the subscriber. `reports_tasks`: the command prints each copy's outcome itself
    /// (`xcr replicate`), so the human output leaves out the replicator's own outcome lines
    /// instead of saying the same thing twice.
    pub fn init(self, reports_tasks: bool) {
        match self {
            Self::Json => xcr::telemetry::init(),
            Self::Human => {
                // EMF metric lines are JSON for CloudWatch, not for a person's terminal.
                xcr::metrics::quiet_by_default();
                xcr::telemetry::init_human(move |m| reports_tasks && m.target() == xcr::telemetry::TASK);
            }
        }
    }
}
