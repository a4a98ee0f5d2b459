//! The log: its level changeable while running (SIGTTIN/SIGTTOU, one nutcracker level at a
//! time, as twemproxy does) and its `-o` file reopenable (SIGHUP), so that logrotate can
//! rename the file without `copytruncate` and the proxy then writes to a fresh one.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

/// The highest nutcracker log level (`-v 11`).
pub const MAX_LEVEL: u8 = 11;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("cannot open log file {}: {source}", path.display())]
    Open { path: PathBuf, source: io::Error },
    #[error("cannot change the log level: {0}")]
    Reload(#[from] reload::Error),
    #[error("a global logger is already installed: {0}")]
    Init(#[from] tracing_subscriber::util::TryInitError),
}

/// The tracing filter directive for nutcracker level `level` (`-v`).
pub fn filter_for(level: u8) -> &'static str {
    match level {
        0..=3 => "error",
        4 => "warn",
        5 | 6 => "info",
        7 => "debug",
        _ => "trace",
    }
}

/// The installed logger's controls, shared with the signal handling in `server`.
pub struct Logging {
    /// The nutcracker level in force (the `-v` value, then moved by signals).
    level: Mutex<u8>,
    filter: reload::Handle<EnvFilter, Registry>,
    file: Option<LogFile>,
}

impl std::fmt::Debug for Logging {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Logging")
            .field("level", &self.level())
            .field("file", &self.file.as_ref().map(|f| &f.path))
            .finish()
    }
}

impl Logging {
    /// Installs the global logger: level `verbose` (RUST_LOG, when set, takes precedence
    /// until a signal changes the level), to `output` or else standard error.
    pub fn init(verbose: u8, output: Option<&Path>) -> Result<Arc<Logging>, LogError> {
        let filter = EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| EnvFilter::new(filter_for(verbose)));
        let (filter, handle) = reload::Layer::new(filter);
        let fmt = tracing_subscriber::fmt::layer().with_target(false);
        let file = output.map(LogFile::open).transpose()?;
        match &file {
            Some(file) => tracing_subscriber::registry()
                .with(filter)
                .with(fmt.with_ansi(false).with_writer(file.clone()))
                .try_init()?,
            None => {
                let ansi = io::IsTerminal::is_terminal(&io::stderr());
                tracing_subscriber::registry()
                    .with(filter)
                    .with(fmt.with_ansi(ansi).with_writer(io::stderr))
                    .try_init()?
            }
        }
        Ok(Arc::new(Logging {
            level: Mutex::new(verbose.min(MAX_LEVEL)),
            filter: handle,
            file,
        }))
    }

    /// The nutcracker level in force.
    pub fn level(&self) -> u8 {
        *self.level.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves the level up (`delta` > 0, more detail) or down by `delta`, within 0..=11, and
    /// returns the new level.
    pub fn adjust(&self, delta: i8) -> Result<u8, LogError> {
        let mut level = self.level.lock().unwrap_or_else(|e| e.into_inner());
        let new = level.saturating_add_signed(delta).min(MAX_LEVEL);
        self.filter.reload(EnvFilter::new(filter_for(new)))?;
        *level = new;
        Ok(new)
    }

    /// Reopens the `-o` file by name (a no-op when logging to standard error). On failure
    /// the old file stays in use.
    pub fn reopen(&self) -> Result<(), LogError> {
        match &self.file {
            Some(file) => file.reopen(),
            None => Ok(()),
        }
    }
}

/// The `-o` file, shared by every writer the fmt layer makes so that a reopen swaps it for
/// all of them at once.
#[derive(Clone)]
struct LogFile {
    path: PathBuf,
    file: Arc<Mutex<File>>,
}

impl LogFile {
    fn open(path: &Path) -> Result<LogFile, LogError> {
        Ok(LogFile {
            path: path.to_path_buf(),
            file: Arc::new(Mutex::new(open_append(path)?)),
        })
    }

    fn reopen(&self) -> Result<(), LogError> {
        let new = open_append(&self.path)?;
        *self.file.lock().unwrap_or_else(|e| e.into_inner()) = new;
        Ok(())
    }
}

fn open_append(path: &Path) -> Result<File, LogError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| LogError::Open {
            path: path.to_path_buf(),
            source,
        })
}

/// One event's write, holding the file's lock so that lines from threads never interleave.
pub struct LogFileWriter<'a>(MutexGuard<'a, File>);

impl io::Write for LogFileWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl<'a> MakeWriter<'a> for LogFile {
    type Writer = LogFileWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LogFileWriter(self.file.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

#[cfg(test)]
mod tests {
    use super::filter_for;

    #[test]
    fn nutcracker_levels_map_to_tracing_filters() {
        let got: Vec<&str> = (0..=11).map(filter_for).collect();
        assert_eq!(&got[..4], ["error"; 4]);
        assert_eq!(&got[4..7], ["warn", "info", "info"]);
        assert_eq!(got[7], "debug");
        assert_eq!(&got[8..], ["trace"; 4]);
    }
}
