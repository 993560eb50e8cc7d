//! The fault suite's short form (issue 12), inside `make test`: every case of the
//! table at a reduced load; the edge fuzz, the keysync kill loop and the PostgreSQL
//! outage against the native filter too (issue 24). `make faults` runs the full loads (the `keysync-faults`
//! binary) and its figures are in RELIABILITY.md. Each case prints its figures (run with
//! `--nocapture` to see them) before it checks the promises.

use keysync_e2e::faults::edge_fuzz::{self, Enforcement};
use keysync_e2e::faults::vm_crash::{self, Vm};
use keysync_e2e::faults::{
    clock_step, dump_restore, hot_restart, keysync_kills, postgres_outage, redis_outage,
    rogue_stream, split_keysyncs, Scale,
};
use keysync_e2e::gateway::FilterKind;

#[test]
fn edge_fuzz_with_the_wasm_filter() {
    edge_fuzz::run(Scale::Short, Enforcement::Wasm);
}

#[test]
fn edge_fuzz_with_the_native_filter() {
    edge_fuzz::run(Scale::Short, Enforcement::Native);
}

#[test]
fn edge_fuzz_with_ext_authz() {
    edge_fuzz::run(Scale::Short, Enforcement::ExtAuthz);
}

#[test]
fn a_rogue_keysync() {
    rogue_stream::run(Scale::Short);
}

#[test]
fn keysync_killed_and_frozen_again_and_again() {
    keysync_kills::run(Scale::Short, FilterKind::Wasm);
}

#[test]
fn keysync_killed_and_frozen_again_and_again_with_the_native_filter() {
    keysync_kills::run(Scale::Short, FilterKind::Native);
}

#[test]
fn postgresql_stopped_then_blackholed() {
    postgres_outage::run(Scale::Short, FilterKind::Wasm);
}

#[test]
fn postgresql_stopped_then_blackholed_with_the_native_filter() {
    postgres_outage::run(Scale::Short, FilterKind::Native);
}

#[test]
fn an_older_dump_restored() {
    dump_restore::run(Scale::Short);
}

#[test]
fn two_keysyncs_one_cut_off_from_postgresql() {
    split_keysyncs::run(Scale::Short);
}

#[test]
fn envoy_hot_restarted_with_keysync_up_then_down() {
    hot_restart::run(Scale::Short);
}

#[test]
fn redis_stopped_and_restarted_under_global_limits() {
    redis_outage::run(Scale::Short);
}

#[test]
fn wall_clock_stepped_back_an_hour() {
    clock_step::run(Scale::Short);
}

#[test]
fn the_sync_vm_crashes() {
    vm_crash::run(Scale::Short, Vm::Sync);
}

#[test]
fn an_auth_vm_crashes() {
    vm_crash::run(Scale::Short, Vm::Auth);
}
