//! Pins processes to CPUs (`taskset`), so that a measured Envoy has a core of its own
//! and the load generator runs on the others: on these 2-core machines, Envoy and wrk
//! otherwise share both cores, and which one runs where moves a per-request figure by
//! more than the effects being measured.

use std::process::Command;

/// The CPUs this machine has, if it says.
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Pins every thread of `pid` (and what they start later) to `cpus` (a `taskset` list
/// such as `0` or `1-3`); false if that failed.
pub fn pin(pid: u32, cpus: &str) -> bool {
    Command::new("taskset")
        .args(["--all-tasks", "--pid", "--cpu-list", cpus, &pid.to_string()])
        .output()
        .is_ok_and(|output| output.status.success())
}

/// Keeps CPU 0 for the measured Envoys: pins this process, and so what it starts from
/// now on (`ours`: wrk, ...; the Envoys until they are pinned to CPU 0), to the other
/// CPUs, and says so; false when it could not (one CPU, or taskset failed).
pub fn leave_cpu_0_to_envoy(ours: &str) -> bool {
    let pinned = cpus() >= 2 && pin(std::process::id(), &format!("1-{}", cpus() - 1));
    if pinned {
        println!("pinned: each Envoy on CPU 0, {ours} on the others");
    } else {
        println!("not pinned (one CPU, or taskset failed): Envoy and wrk share the CPUs");
    }
    pinned
}
