//! A wall clock the test can step while processes run, through Debian's libfaketime
//! (`apt-get install libfaketime`): a process started with [`FakeClock::env`] preloads the
//! library, which reads its offset from a timestamp file on every clock read
//! (`FAKETIME_TIMESTAMP_FILE`, `FAKETIME_NO_CACHE=1`), so [`FakeClock::set_offset`]
//! steps the clock of every such process at once, as an NTP step or an operator's
//! `date -s` would. Only the wall clock moves (`FAKETIME_DONT_FAKE_MONOTONIC=1`): a
//! step does not touch `CLOCK_MONOTONIC`, and neither does a real one.
//!
//! The library is `FAKETIME_LIB` when set, else Debian's multiarch path.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::scratch::ScratchDir;

/// The offset file and the library that reads it.
pub struct FakeClock {
    library: PathBuf,
    file: PathBuf,
    _dir: ScratchDir,
}

impl FakeClock {
    /// A clock at the real time (offset 0) until stepped.
    pub fn new() -> FakeClock {
        let dir = ScratchDir::new("faketime")
            .unwrap_or_else(|error| panic!("faketime: cannot create a temp dir: {error}"));
        let clock = FakeClock {
            library: library(),
            file: dir.path().join("faketimerc"),
            _dir: dir,
        };
        clock.write("+0");
        clock
    }

    /// Environment that puts a process on this clock.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("LD_PRELOAD", self.library.display().to_string()),
            ("FAKETIME_TIMESTAMP_FILE", self.file.display().to_string()),
            ("FAKETIME_NO_CACHE", "1".to_string()),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1".to_string()),
            // File times stay real: nothing here is about them.
            ("NO_FAKE_STAT", "1".to_string()),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_string(), value))
        .collect()
    }

    /// Steps the wall clock of every process on this clock to the real time plus
    /// `offset` seconds (negative: into the past).
    pub fn set_offset(&self, offset: i64) {
        self.write(&format!("{offset:+}"));
    }

    /// [`FakeClock::set_offset`] into the past by `by`.
    pub fn step_back(&self, by: Duration) {
        let seconds = i64::try_from(by.as_secs()).unwrap_or(i64::MAX);
        self.set_offset(-seconds);
    }

    fn write(&self, spec: &str) {
        // Written whole in one call: a reader never sees half of a line this short.
        std::fs::write(&self.file, format!("{spec}\n")).unwrap_or_else(|error| {
            panic!("faketime: cannot write {}: {error}", self.file.display())
        });
    }
}

impl Default for FakeClock {
    fn default() -> Self {
        FakeClock::new()
    }
}

/// `FAKETIME_LIB`, else libfaketime where Debian's `libfaketime` package puts it.
fn library() -> PathBuf {
    if let Some(path) = std::env::var_os("FAKETIME_LIB").filter(|path| !path.is_empty()) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "FAKETIME_LIB={} does not exist",
            path.display()
        );
        return path;
    }
    let candidates = [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/faketime/libfaketime.so.1",
    ];
    candidates
        .iter()
        .map(Path::new)
        .find(|path| path.is_file())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| {
            panic!(
                "libfaketime not found at {candidates:?} (or set FAKETIME_LIB): \
                 apt-get install libfaketime (make test installs it)"
            )
        })
}
