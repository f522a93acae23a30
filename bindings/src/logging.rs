//! The core's logs, handed to the app's logger (Logcat, os_log, …). They carry counts, ids
//! and error kinds, never what a person typed, where they were or who they are.

use std::cell::Cell;
use std::fmt::Write as _;
use std::sync::{Arc, OnceLock, RwLock};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber};

use crate::error::CallbackError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, uniffi::Enum)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

/// Receives the library's log lines; called on the thread that logs. What it throws is
/// dropped.
#[uniffi::export(with_foreign)]
pub trait LogSink: Send + Sync {
    fn log(&self, level: LogLevel, target: String, message: String) -> Result<(), CallbackError>;
}

type Sink = (Arc<dyn LogSink>, LogLevel);

fn sink() -> &'static RwLock<Option<Sink>> {
    static SINK: OnceLock<RwLock<Option<Sink>>> = OnceLock::new();
    SINK.get_or_init(|| RwLock::new(None))
}

thread_local! {
    /// Set while a sink runs: anything it logs through the library is not fed back to it.
    static IN_SINK: Cell<bool> = const { Cell::new(false) };
}

fn level_of(l: &tracing::Level) -> LogLevel {
    match *l {
        tracing::Level::ERROR => LogLevel::Error,
        tracing::Level::WARN => LogLevel::Warn,
        tracing::Level::INFO => LogLevel::Info,
        tracing::Level::DEBUG => LogLevel::Debug,
        _ => LogLevel::Trace,
    }
}

/// Sends the library's log lines at `level` and above to `sink`, replacing any sink set before.
#[uniffi::export]
pub fn set_log_sink(sink_: Arc<dyn LogSink>, level: LogLevel) {
    *sink().write().unwrap_or_else(|p| p.into_inner()) = Some((sink_, level));
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        // An app that set its own global subscriber keeps it; the sink is then unused.
        let _ = tracing::subscriber::set_global_default(Forward);
    });
}

/// Stops sending log lines.
#[uniffi::export]
pub fn clear_log_sink() {
    *sink().write().unwrap_or_else(|p| p.into_inner()) = None;
}

struct Forward;

struct Line {
    message: String,
    fields: String,
}

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }
}

impl Subscriber for Forward {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        // The sink and its level change at run time: ask on every event.
        Interest::sometimes()
    }

    fn enabled(&self, m: &Metadata<'_>) -> bool {
        m.target().starts_with("curbside")
            && match &*sink().read().unwrap_or_else(|p| p.into_inner()) {
                Some((_, level)) => level_of(m.level()) <= *level,
                None => false,
            }
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        if IN_SINK.with(Cell::get) {
            return;
        }
        let Some((sink, _)) = sink().read().unwrap_or_else(|p| p.into_inner()).clone() else {
            return;
        };
        let mut line = Line {
            message: String::new(),
            fields: String::new(),
        };
        event.record(&mut line);
        let meta = event.metadata();
        IN_SINK.with(|f| f.set(true));
        let _ = sink.log(
            level_of(meta.level()),
            meta.target().to_string(),
            line.message + &line.fields,
        );
        IN_SINK.with(|f| f.set(false));
    }
}
