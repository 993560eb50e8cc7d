//! One request through the auth filter, on its worker: Envoy's hooks handed to the core's
//! request flow (`AuthRequest`), the answers to its lookup (a gRPC call this stream started)
//! read back, its worker ticked (`worker_slot`), and its wake-ups while it is parked.

use std::rc::Rc;
use std::sync::Arc;

use keysync_filter_core::{Action, AuthRequest};

use crate::abi::{
    Attribute, HeadersStatus, HttpStream, HttpStreamFilter, Origin, StreamRef, StreamResetReason,
    StreamScheduler,
};
use crate::auth_filter::worker_slot::WorkerSlot;
use crate::grpc::calls::{self, Delivery};
use crate::native_host::NativeHost;
use crate::native_request::NativeRequest;
use crate::wakeups::{self, WAKE};

pub struct AuthStream {
    /// `None` once the stream is over.
    request: Option<AuthRequest<NativeHost>>,
    slot: Rc<WorkerSlot>,
    /// While the request is parked: its wake-ups.
    wakeup: Option<Arc<StreamScheduler>>,
    /// The request ended with its headers: no body, so no size to read at the end.
    bodiless: bool,
}

impl AuthStream {
    pub fn new(slot: Rc<WorkerSlot>, stream: StreamRef) -> AuthStream {
        let request = AuthRequest::new(Rc::clone(&slot.worker), NativeRequest { stream });
        AuthStream {
            request: Some(request),
            slot,
            wakeup: None,
            bodiless: false,
        }
    }

    /// After the core acted: keeps a parked request's wake-ups coming, stops them after.
    fn keep_waking(&mut self, stream: &HttpStream<'_>) {
        let parked = self.request.as_ref().is_some_and(AuthRequest::is_parked);
        if !parked {
            self.wakeup = None;
        } else if self.wakeup.is_none() {
            if let Some(scheduler) = stream.scheduler() {
                let scheduler = Arc::new(scheduler);
                wakeups::register(&scheduler);
                self.wakeup = Some(scheduler);
            }
        }
    }

    fn lookup_answered(&mut self, stream: &HttpStream<'_>, deliveries: Vec<Delivery>) {
        for delivery in deliveries {
            if let (Delivery::Reply { token, reply }, Some(request)) =
                (delivery, self.request.as_mut())
            {
                request.on_lookup_reply(token, reply);
            }
        }
        self.keep_waking(stream);
    }
}

/// A paused request waits whole: holding only its headers would let its first body chunk
/// (the request body hook answers `Continue`) send it upstream undecided, credential and all,
/// while its key is being looked up (e2e `contract.rs`, `check_requests_with_a_body`).
fn status(action: Action) -> HeadersStatus {
    match action {
        Action::Continue => HeadersStatus::Continue,
        Action::Pause => HeadersStatus::StopAllIterationAndWatermark,
    }
}

impl HttpStreamFilter for AuthStream {
    fn on_request_headers(
        &mut self,
        stream: &mut HttpStream<'_>,
        end_of_stream: bool,
    ) -> HeadersStatus {
        self.bodiless = end_of_stream;
        self.slot.request_started();
        let Some(request) = self.request.as_mut() else {
            return HeadersStatus::Continue;
        };
        let action = request.on_request_headers();
        self.keep_waking(stream);
        status(action)
    }

    fn on_response_headers(
        &mut self,
        _stream: &mut HttpStream<'_>,
        _end_of_stream: bool,
    ) -> HeadersStatus {
        if let Some(request) = self.request.as_mut() {
            request.on_response_headers();
        }
        HeadersStatus::Continue
    }

    fn on_scheduled(&mut self, stream: &mut HttpStream<'_>, event_id: u64) {
        if event_id == WAKE {
            self.slot.woken();
            self.keep_waking(stream);
        }
    }

    fn on_http_stream_headers(
        &mut self,
        stream: &mut HttpStream<'_>,
        stream_id: u64,
        headers: &[(&[u8], &[u8])],
        end_stream: bool,
    ) {
        let origin = Origin::Stream(stream.serial());
        let deliveries = calls::on_headers(origin, stream_id, headers, end_stream);
        self.lookup_answered(stream, deliveries);
    }

    fn on_http_stream_data(
        &mut self,
        stream: &mut HttpStream<'_>,
        stream_id: u64,
        chunks: &[&[u8]],
        end_stream: bool,
    ) {
        let origin = Origin::Stream(stream.serial());
        let deliveries = calls::on_data(origin, stream_id, chunks, end_stream);
        self.lookup_answered(stream, deliveries);
    }

    fn on_http_stream_trailers(
        &mut self,
        stream: &mut HttpStream<'_>,
        stream_id: u64,
        trailers: &[(&[u8], &[u8])],
    ) {
        let origin = Origin::Stream(stream.serial());
        let deliveries = calls::on_trailers(origin, stream_id, trailers);
        self.lookup_answered(stream, deliveries);
    }

    fn on_http_stream_complete(&mut self, stream: &mut HttpStream<'_>, stream_id: u64) {
        let origin = Origin::Stream(stream.serial());
        let deliveries = calls::on_complete(origin, stream_id);
        self.lookup_answered(stream, deliveries);
    }

    fn on_http_stream_reset(
        &mut self,
        stream: &mut HttpStream<'_>,
        stream_id: u64,
        _reason: StreamResetReason,
    ) {
        let origin = Origin::Stream(stream.serial());
        let deliveries = calls::on_reset(origin, stream_id);
        self.lookup_answered(stream, deliveries);
    }

    /// The stream is over: usage metering counts the request, with its body sizes (two
    /// reads, only while metering is on; one for a request without a body, whose size is
    /// known: a read less on every GET).
    fn on_stream_complete(&mut self, stream: &mut HttpStream<'_>) {
        let Some(request) = self.request.as_mut() else {
            return;
        };
        if self.slot.worker.metering() {
            let sizes = [
                (
                    Attribute::RequestSize,
                    AuthRequest::on_request_body as fn(&mut _, usize),
                ),
                (Attribute::ResponseSize, AuthRequest::on_response_body),
            ];
            let skip = usize::from(self.bodiless);
            for (attribute, add) in sizes.into_iter().skip(skip) {
                if let Some(size) = stream.attribute_int(attribute) {
                    add(request, usize::try_from(size).unwrap_or(usize::MAX));
                }
            }
        }
        request.finish();
    }
}

impl Drop for AuthStream {
    fn drop(&mut self) {
        // The request first (its usage, its lookup slot), then the worker's idle tick.
        self.request = None;
        self.wakeup = None;
        self.slot.request_ended();
    }
}
