//! CPU time a process has used, all its threads, from /proc/<pid>/task/*/schedstat:
//! what Envoy itself spent, whatever else the shared machine made it wait for.

/// Nanoseconds on a CPU so far, summed over the process's threads that are alive now.
pub fn process_cpu_ns(pid: u32) -> u64 {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap_or_else(|e| panic!("cannot list /proc/{pid}/task: {e}"));
    tasks
        .filter_map(|task| {
            let path = task.ok()?.path().join("schedstat");
            // A thread that ended in between has no file left; it is simply not counted.
            let stat = std::fs::read_to_string(path).ok()?;
            running_ns(&stat)
        })
        .sum()
}

/// The first field of a schedstat line: time spent running, in nanoseconds.
fn running_ns(schedstat: &str) -> Option<u64> {
    schedstat.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_running_time() {
        assert_eq!(running_ns("181496595 12498903 454\n"), Some(181_496_595));
        assert_eq!(running_ns(""), None);
    }

    #[test]
    fn this_process_has_run() {
        let before = process_cpu_ns(std::process::id());
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = std::hint::black_box(x.wrapping_add(i));
        }
        assert!(process_cpu_ns(std::process::id()) > before, "{x}");
    }
}
