//! The exit codes of every subcommand, and how a failure is said: once, in words.

use std::path::PathBuf;
use std::process::ExitCode;
use xcr::ErrorKind;
use xcr::config::ConfigError;

/// What `xcr` exits with. One table for every subcommand (DOCS-PENDING.md, "CLI"); scripts
/// and the tests rely on these numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: done (`xcr audit`: no drift; `xcr jobs watch`: the job succeeded).
    Ok = 0,
    /// 1: the operation ran and failed, or found something: a copy failed or was `busy`
    /// (try again), drift found, a job that ended failed or cancelled, a job that cannot be
    /// cancelled; and failures of the services on the way (after retries).
    Failed = 1,
    /// 2: bad usage or configuration: arguments (clap's own usage errors exit 2 too), missing
    /// or invalid settings, a destination outside `XCR_ALLOWED_DESTINATIONS`, a table, queue or
    /// bucket the configuration names that does not exist. Nothing works until a person fixes it.
    Usage = 2,
    /// 3: what the command names does not exist: the source object (`xcr replicate`), any
    /// record of it (`xcr status`), the job (`xcr jobs show|cancel|watch`).
    NotFound = 3,
    /// 4: the command stopped part-way and its result is incomplete: `xcr audit` could not
    /// finish its walk, or `--repair` could not enqueue every command.
    Incomplete = 4,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(e as u8)
    }
}

impl Exit {
    /// The exit code for a library error: configuration is the operator's to fix (2); every
    /// other kind is a failure of the operation (1). Commands for which `not_found` means the
    /// named thing is missing map it to [`Exit::NotFound`] themselves.
    pub fn for_kind(kind: ErrorKind) -> Self {
        if kind == ErrorKind::Config { Self::Usage } else { Self::Failed }
    }
}

/// A command that did not succeed: the code, and what to tell the person (`words`: no debug
/// dumps) and the log (`chain`: every cause).
#[derive(Debug)]
pub struct Failure {
    pub exit: Exit,
    /// The error kind, for `--json` output (`config`, `not_found`, ..., or `invalid` for usage).
    pub kind: &'static str,
    pub words: String,
    pub chain: String,
}

impl Failure {
    pub fn new(exit: Exit, kind: &'static str, words: impl Into<String>) -> Self {
        let words = words.into();
        Self { exit, kind, chain: words.clone(), words }
    }

    /// Bad usage (2).
    pub fn usage(words: impl Into<String>) -> Self {
        Self::new(Exit::Usage, "invalid", words)
    }

    /// The same failure with another exit code.
    pub fn exit(mut self, exit: Exit) -> Self {
        self.exit = exit;
        self
    }

    /// Prefixes what was being done.
    pub fn context(mut self, what: impl std::fmt::Display) -> Self {
        self.words = format!("{what}: {}", self.words);
        self.chain = format!("{what}: {}", self.chain);
        self
    }
}

impl From<ConfigError> for Failure {
    /// Every problem at once (2), and where the settings are when some are missing.
    fn from(e: ConfigError) -> Self {
        let mut words = e.to_string();
        if e.lacks_settings()
            && let Some(env) = local_env()
        {
            let env = shown(&env);
            words.push_str(&format!(
                "\n  hint: {env} holds a local stack's settings: load them into this shell with \
                 `set -a; . {env}; set +a` (or start a stack with `make local-up`, which writes it)"
            ));
        }
        Self { exit: Exit::Usage, kind: "config", chain: words.clone(), words }
    }
}

impl From<xcr::Error> for Failure {
    fn from(e: xcr::Error) -> Self {
        Self { exit: Exit::for_kind(e.kind()), kind: e.kind().as_str(), chain: e.chain(), words: words_of(&e) }
    }
}

/// A library error in words: its summary and, for a refused connection with a local stack
/// around, the likely cause: a shell that loaded an older stack's ports (they change on every
/// `make local-up`).
fn words_of(e: &xcr::Error) -> String {
    let mut words = e.summary();
    if e.never_sent()
        && let Some(env) = local_env()
    {
        let env = shown(&env);
        words.push_str(&format!(
            "\n  hint: nothing listens there. A local stack's ports change whenever it starts: load \
             {env} again (`set -a; . {env}; set +a`), or start the stack with `make local-up`"
        ));
    }
    words
}

impl From<anyhow::Error> for Failure {
    /// Words from the context chain, stopping at the first library error (whose own
    /// [`xcr::Error::summary`] says the rest without the SDK's dumps); the code from that
    /// error's kind, 2 for a configuration error, else 1.
    fn from(e: anyhow::Error) -> Self {
        let mut context: Vec<String> = Vec::new();
        for cause in e.chain() {
            if let Some(config) = cause.downcast_ref::<ConfigError>() {
                return Failure::from(config.clone()).with_prefix(&context);
            }
            if let Some(x) = cause.downcast_ref::<xcr::Error>() {
                let f = Failure {
                    exit: Exit::for_kind(x.kind()),
                    kind: x.kind().as_str(),
                    words: words_of(x),
                    chain: format!("{e:#}"),
                };
                return f.with_prefix(&context);
            }
            let text = xcr::domain::error::without_dumps(&cause.to_string());
            if !text.is_empty() && !context.iter().any(|c| c.contains(&text)) {
                context.push(text);
            }
        }
        Failure { exit: Exit::Failed, kind: "failed", words: context.join(": "), chain: format!("{e:#}") }
    }
}

impl Failure {
    fn with_prefix(mut self, context: &[String]) -> Self {
        if !context.is_empty() {
            let prefix = context.join(": ");
            if !self.words.starts_with(&prefix) {
                self.words = format!("{prefix}: {}", self.words);
            }
        }
        self
    }
}

/// `.xcr/local.env` in this directory or one above it: where `make local-up` wrote a stack's
/// settings.
pub fn local_env() -> Option<PathBuf> {
    let cwd = std::env::current_dir().ok()?;
    cwd.ancestors().map(|d| d.join(".xcr").join("local.env")).find(|p| p.is_file())
}

/// The path as a person would type it here: relative when under the current directory.
fn shown(env: &std::path::Path) -> String {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| env.strip_prefix(&cwd).ok().map(|p| p.display().to_string()))
        .unwrap_or_else(|| env.display().to_string())
}
