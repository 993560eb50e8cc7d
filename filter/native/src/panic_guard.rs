//! Stops panics at the module's edge: a panic unwinding into Envoy's C++ frames would abort
//! the whole Envoy, so every hook runs the module's code through [`run`].
//!
//! What a panic left behind is reported without its message unless the message is a string
//! literal from the source: a formatted message or an `unwrap` of an error can carry request
//! data (a key), which must never reach a log line. [`install`] replaces the default panic
//! hook (which prints the message to stderr) with one that keeps the location and such a
//! literal for the guard to report.

use std::any::Any;
use std::cell::Cell;
use std::fmt;
use std::panic::{self, AssertUnwindSafe, PanicHookInfo};

thread_local! {
    /// Where the last panic on this thread happened, set by the hook, taken by [`run`].
    static LAST_PANIC: Cell<Option<String>> = const { Cell::new(None) };
}

/// A caught panic: where it happened and its message if that was a string literal.
#[derive(Debug, PartialEq, Eq)]
pub struct Panicked {
    location: Option<String>,
    literal: Option<&'static str>,
}

impl fmt::Display for Panicked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Some(location) => write!(f, "at {location}")?,
            None => f.write_str("at an unknown place")?,
        }
        match self.literal {
            Some(message) => write!(f, ": {message}"),
            None => f.write_str(": message withheld"),
        }
    }
}

/// Replaces the process's panic hook (this module's copy of std only) with one that records
/// the location for [`run`] and prints nothing.
pub fn install() {
    // Unit tests keep the default report too, so that a failing assertion still shows.
    #[cfg(test)]
    let default_hook = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        record_location(info);
        #[cfg(test)]
        default_hook(info);
    }));
}

fn record_location(info: &PanicHookInfo<'_>) {
    let location = info
        .location()
        .map(|location| format!("{}:{}", location.file(), location.line()));
    LAST_PANIC.with(|last| last.set(location));
}

/// Runs `f`, turning a panic into `Err`. The caller decides what the panic means for Envoy
/// (a 500, a refused configuration, a dropped event) and logs it.
pub fn run<R>(f: impl FnOnce() -> R) -> Result<R, Panicked> {
    LAST_PANIC.with(Cell::take);
    // The module's state may be half-updated after a panic; the hooks drop the object that
    // panicked (a stream's filter) or only report it, which is what unwind safety asks.
    panic::catch_unwind(AssertUnwindSafe(f)).map_err(|payload| Panicked {
        location: LAST_PANIC.with(Cell::take),
        literal: literal_message(payload.as_ref()),
    })
}

fn literal_message(payload: &(dyn Any + Send)) -> Option<&'static str> {
    payload.downcast_ref::<&'static str>().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_passes_through() {
        assert_eq!(run(|| 41 + 1), Ok(42));
    }

    #[test]
    #[allow(clippy::panic)]
    fn a_literal_panic_is_caught_with_its_message_and_place() {
        install();
        let caught = run(|| -> u32 { panic!("boom") }).unwrap_err();
        assert_eq!(caught.literal, Some("boom"));
        let text = caught.to_string();
        assert!(text.starts_with("at "), "{text}");
        assert!(text.contains("panic_guard.rs:"), "{text}");
        assert!(text.ends_with(": boom"), "{text}");
    }

    #[test]
    #[allow(clippy::panic)]
    fn a_formatted_message_is_withheld() {
        install();
        let secret = "sk_live_NotToBeLogged123";
        let caught = run(|| -> u32 { panic!("bad key {secret}") }).unwrap_err();
        let text = caught.to_string();
        assert!(!text.contains(secret), "{text}");
        assert!(text.ends_with("message withheld"), "{text}");
    }

    #[test]
    fn an_unwrap_on_an_error_is_withheld_too() {
        install();
        let caught = run(|| "sk_live_NotToBeLogged123".parse::<u32>().unwrap()).unwrap_err();
        assert!(!caught.to_string().contains("sk_live"));
    }
}
