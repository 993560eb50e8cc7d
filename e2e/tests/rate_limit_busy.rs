//! When demand exceeds the budget, a window allows exactly its budget, even on a busy
//! machine where a worker's lease of requests may sit unused past its tick: requests
//! that find the budget spent while another worker still holds leased requests wait for
//! them instead of being refused (see `filter/core/src/limits/local_rate_limit.rs`).

use keysync_e2e::http::Response;
use keysync_e2e::poll::DEADLINE;
use keysync_e2e::rate_window::enough_of_the_window_left;
use keysync_e2e::replies::count_status;
use keysync_e2e::stack::Stack;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Threads that keep the machine's cores busy while the test runs.
struct Busy {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Busy {
    fn start(threads: usize) -> Busy {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..threads)
            .map(|_| {
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    let mut x: u64 = 1;
                    while !stop.load(Ordering::Relaxed) {
                        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                        std::hint::black_box(x);
                    }
                })
            })
            .collect();
        Busy { stop, threads }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

#[test]
fn demand_over_the_budget_on_a_busy_machine_gets_exactly_the_budget() {
    const BUDGET: usize = 2_000;
    const DEMAND: usize = 2_600;
    const CLIENTS: usize = 12;
    let stack = Stack::start(|options| options.concurrency = 2);
    let org = stack.create_org("busy");
    stack.set_org_limit(&org, &["--rpm", &BUDGET.to_string()]);
    let key = stack.create_key(&org, &[]);
    stack.gateway.wait_for_status("/", &key.key, 200, DEADLINE);
    // The probe above counted: wait for a fresh window with room for the whole run.
    keysync_e2e::rate_window::sleep_into_the_next_window();
    enough_of_the_window_left(40);

    let _busy = Busy::start(2);
    let sent = Arc::new(AtomicUsize::new(0));
    let responses: Arc<Mutex<Vec<Response>>> = Arc::default();
    let gateway = &stack.gateway;
    std::thread::scope(|scope| {
        for _ in 0..CLIENTS {
            let (sent, responses, key) = (Arc::clone(&sent), Arc::clone(&responses), &key.key);
            scope.spawn(move || {
                while sent.fetch_add(1, Ordering::SeqCst) < DEMAND {
                    let response = gateway.get_with_key("/", key);
                    responses
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .push(response);
                }
            });
        }
    });
    let responses = responses
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    assert_eq!(responses.len(), DEMAND);
    assert_eq!(
        count_status(&responses, 200),
        BUDGET,
        "exactly the budget passes: 429s {}, others {:?}",
        count_status(&responses, 429),
        responses
            .iter()
            .filter(|r| r.status != 200 && r.status != 429)
            .map(|r| r.status)
            .collect::<Vec<_>>()
    );
    assert_eq!(count_status(&responses, 429), DEMAND - BUDGET);
}
