//! The demonstration HTTP filter (see the module docs of `demo`). Settings: `api_key=` the
//! one key it accepts, `cluster=` where callouts and streams go.

use std::sync::Arc;

use keysync_contract::reply::{reply, Denial};

use super::main_thread::{Job, MainThreadWork};
use super::settings::setting;
use crate::abi::{
    log, Attribute, CalloutResponse, CalloutResult, CounterId, FilterConfigHandle, GaugeId,
    HeaderMap, HeadersStatus, HttpFilterConfig, HttpStream, HttpStreamFilter, LogLevel,
    StreamResetReason,
};

pub const FILTER_NAME: &str = "keysync-abi-demo";

/// What every stream of the configuration shares.
struct Shared {
    api_key: String,
    cluster: String,
    requests: CounterId,
    allowed: CounterId,
    last_status: GaugeId,
    main_thread: MainThreadWork,
}

struct DemoConfig {
    shared: Arc<Shared>,
}

pub fn new_filter_config(
    config: &mut FilterConfigHandle<'_>,
    settings: &[u8],
) -> Option<Box<dyn HttpFilterConfig>> {
    let (Some(api_key), Some(cluster)) =
        (setting(settings, "api_key"), setting(settings, "cluster"))
    else {
        log(
            LogLevel::Error,
            "keysync-abi-demo: settings need api_key= and cluster=",
        );
        return None;
    };
    let shared = Shared {
        api_key: api_key.to_string(),
        cluster: cluster.to_string(),
        requests: config.define_counter("demo_requests")?,
        allowed: config.define_counter("demo_allowed")?,
        last_status: config.define_gauge("demo_last_status")?,
        main_thread: MainThreadWork::new(config.scheduler()?),
    };
    log(LogLevel::Info, "keysync-abi-demo: configuration loaded");
    Some(Box::new(DemoConfig {
        shared: Arc::new(shared),
    }))
}

impl HttpFilterConfig for DemoConfig {
    fn new_stream(&self, _stream: &mut HttpStream<'_>) -> Box<dyn HttpStreamFilter> {
        Box::new(DemoStream {
            shared: Arc::clone(&self.shared),
            waiting: None,
        })
    }

    fn on_scheduled(&self, config: &mut FilterConfigHandle<'_>, event_id: u64) {
        self.shared
            .main_thread
            .start(config, event_id, &self.shared.cluster);
    }

    fn on_callout_done(
        &self,
        _config: &mut FilterConfigHandle<'_>,
        callout_id: u64,
        result: CalloutResult,
        response: &CalloutResponse<'_>,
    ) {
        self.shared
            .main_thread
            .callout_done(callout_id, result, response);
    }

    fn on_stream_headers(
        &self,
        _config: &mut FilterConfigHandle<'_>,
        stream_id: u64,
        headers: &[(&[u8], &[u8])],
        _end_stream: bool,
    ) {
        self.shared.main_thread.stream_headers(stream_id, headers);
    }

    fn on_stream_data(
        &self,
        _config: &mut FilterConfigHandle<'_>,
        stream_id: u64,
        chunks: &[&[u8]],
        _end_stream: bool,
    ) {
        self.shared.main_thread.stream_data(stream_id, chunks);
    }

    fn on_stream_complete(&self, _config: &mut FilterConfigHandle<'_>, stream_id: u64) {
        self.shared.main_thread.stream_complete(stream_id);
    }

    fn on_stream_reset(
        &self,
        _config: &mut FilterConfigHandle<'_>,
        stream_id: u64,
        reason: StreamResetReason,
    ) {
        self.shared.main_thread.stream_reset(stream_id, reason);
    }
}

/// What a held request waits for.
enum Waiting {
    Thread,
    Callout(u64),
    MainThread(u64),
}

/// The event a thread of the module's own commits.
const THREAD_EVENT: u64 = 1;

struct DemoStream {
    shared: Arc<Shared>,
    waiting: Option<Waiting>,
}

impl DemoStream {
    fn deny(&self, stream: &mut HttpStream<'_>, denial: Denial) -> HeadersStatus {
        let answer = reply(denial, 403);
        stream.set_gauge(self.shared.last_status, u64::from(answer.status));
        stream.send_response(
            answer.status,
            answer.headers,
            answer.body,
            "keysync_abi_demo",
        );
        HeadersStatus::StopIteration
    }

    /// Holds the request for `mode`; `None` if it cannot wait that way.
    fn wait(&mut self, stream: &mut HttpStream<'_>, mode: &[u8]) -> Option<Waiting> {
        match mode {
            b"thread" => {
                let scheduler = stream.scheduler()?;
                std::thread::spawn(move || scheduler.commit(THREAD_EVENT));
                Some(Waiting::Thread)
            }
            b"callout" => {
                let headers: [(&str, &[u8]); 3] = [
                    (":method", b"GET"),
                    (":path", b"/demo-callout"),
                    ("host", b"demo"),
                ];
                let id = stream
                    .callout(&self.shared.cluster, &headers, b"", 5_000)
                    .ok()?;
                Some(Waiting::Callout(id))
            }
            b"main-callout" | b"main-stream" | b"main-stream-reset" => {
                let job = match mode {
                    b"main-callout" => Job::Callout,
                    b"main-stream" => Job::Stream,
                    _ => Job::StreamReset,
                };
                let waiter = stream.scheduler()?;
                Some(Waiting::MainThread(
                    self.shared.main_thread.submit(job, waiter),
                ))
            }
            _ => None,
        }
    }
}

impl HttpStreamFilter for DemoStream {
    fn on_request_headers(
        &mut self,
        stream: &mut HttpStream<'_>,
        _end_of_stream: bool,
    ) -> HeadersStatus {
        stream.increment_counter(self.shared.requests, 1);
        if stream.header(HeaderMap::Request, "x-demo-panic").is_some() {
            #[allow(clippy::panic)]
            {
                panic!("keysync-abi-demo: panic requested by x-demo-panic");
            }
        }
        match stream.header(HeaderMap::Request, "x-api-key") {
            None => return self.deny(stream, Denial::MissingKey),
            Some(key) if key != self.shared.api_key.as_bytes() => {
                return self.deny(stream, Denial::InvalidKey)
            }
            Some(_) => {}
        }
        stream.increment_counter(self.shared.allowed, 1);
        stream.set_gauge(self.shared.last_status, 200);
        stream.remove_header(HeaderMap::Request, "x-api-key");
        stream.set_header(HeaderMap::Request, "x-demo-key", b"accepted");
        let source = stream
            .attribute(Attribute::SourceAddress)
            .unwrap_or_default();
        stream.set_header(HeaderMap::Request, "x-demo-source", &source);
        let route = stream.attribute(Attribute::RouteName).unwrap_or_default();
        stream.set_header(HeaderMap::Request, "x-demo-route", &route);
        let scope = stream
            .route_metadata("keysync", "scope")
            .unwrap_or_default();
        stream.set_header(HeaderMap::Request, "x-demo-scope", &scope);
        let values = stream
            .header_values(HeaderMap::Request, "x-demo-multi")
            .join(&b'+');
        stream.set_header(HeaderMap::Request, "x-demo-multi-joined", &values);

        let Some(mode) = stream.header(HeaderMap::Request, "x-demo-wait") else {
            return HeadersStatus::Continue;
        };
        match self.wait(stream, &mode) {
            Some(waiting) => {
                self.waiting = Some(waiting);
                HeadersStatus::StopIteration
            }
            None => {
                stream.set_header(HeaderMap::Request, "x-demo-waited", b"could not wait");
                HeadersStatus::Continue
            }
        }
    }

    fn on_response_headers(
        &mut self,
        stream: &mut HttpStream<'_>,
        _end_of_stream: bool,
    ) -> HeadersStatus {
        stream.set_header(HeaderMap::Response, "x-demo-response", b"seen");
        HeadersStatus::Continue
    }

    fn on_scheduled(&mut self, stream: &mut HttpStream<'_>, event_id: u64) {
        let outcome = match self.waiting.take() {
            Some(Waiting::Thread) if event_id == THREAD_EVENT => "thread".to_string(),
            Some(Waiting::MainThread(job)) if event_id == job => self
                .shared
                .main_thread
                .take_outcome(job)
                .unwrap_or_else(|| "no outcome".to_string()),
            other => {
                self.waiting = other;
                return;
            }
        };
        stream.set_header(HeaderMap::Request, "x-demo-waited", outcome.as_bytes());
        stream.continue_request();
    }

    fn on_callout_done(
        &mut self,
        stream: &mut HttpStream<'_>,
        callout_id: u64,
        result: CalloutResult,
        response: &CalloutResponse<'_>,
    ) {
        if !matches!(self.waiting, Some(Waiting::Callout(id)) if id == callout_id) {
            return;
        }
        self.waiting = None;
        let outcome = match result {
            CalloutResult::Success => format!(
                "callout status={} bytes={}",
                String::from_utf8_lossy(response.header(":status").unwrap_or_default()),
                response.body().len()
            ),
            other => format!("callout failed: {other:?}"),
        };
        stream.set_header(HeaderMap::Request, "x-demo-waited", outcome.as_bytes());
        stream.continue_request();
    }
}
