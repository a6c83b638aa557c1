//! Decision logs: one JSON line per decision, off unless `decision_log`
//! names a sink.
//!
//! The decision path only ever calls [`DecisionLog::offer`]: it counts the
//! decision, draws whether to keep it (denials and errors may be kept
//! whatever the draw), and for a kept one builds the line and *tries* to
//! push it into a bounded buffer. A full buffer drops the line and counts
//! it; nothing on the decision path waits for the sink. A thread of its own
//! drains the buffer into the sink (stdout, a rotated file, or S3 batches)
//! and counts what it wrote and what it failed to write, so that at any
//! quiet moment
//!
//! ```text
//! decisions = sampled_out + dropped + logged + failed + pending
//! ```
//!
//! where `pending` is what is in the buffer or being written. With logs off
//! there is no [`DecisionLog`] at all: the handlers' `if let Some(log)` is
//! the whole cost.
//!
//! What a line holds is fixed (see [`Line`]); the request's context, the
//! principal's and resource's attributes and a verified token's claims
//! appear only as far as the realm's allowlist names them. A token, an
//! `Authorization` header or any other header but `X-Request-ID` and
//! `traceparent` never does.

use crate::config::Config;
use axum::http::HeaderMap;
use object_store::{Condition, Connect, ObjectStore, Put};
use pdp_core::Snapshot;
use pdp_core::decision::{Answer, Decision, EntityRef, Reason};
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// Upload attempts after the first failed one, for one S3 batch; then the
/// batch is counted failed and dropped (memory stays bounded).
pub const S3_RETRIES: u32 = 3;
/// The first retry's delay; each next one doubles it.
const S3_BACKOFF: Duration = Duration::from_millis(100);
/// Lines handed to a line sink between two flushes, at most.
const LINES_PER_WRITE: usize = 1024;
/// How long the drain waits after a write that did not fill a batch,
/// letting records gather: a drain that woke for every record cost every
/// decision a wake-up and a write (benches/README.md, decision logs).
const LINGER: Duration = Duration::from_millis(10);
/// The longest request id or `traceparent` logged, bytes; a longer one is
/// cut (at a character boundary): a client chooses them.
const MAX_ID_BYTES: usize = 256;

/// The time of day, as the decision log reads it: unix milliseconds.
/// Injected so tests choose the time (and so the S3 keys) without waiting.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Milliseconds since the unix epoch.
    fn now_ms(&self) -> i64;
}

/// The host's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }
}

/// Where sampling draws come from: uniform in `[0, 1)`. Injected so tests
/// know which decisions are kept. Not derived from the request (its id is
/// the client's choice: a client could pick ids that are never sampled).
pub trait Sampler: Send + Sync + std::fmt::Debug {
    /// The next draw, in `[0, 1)`.
    fn draw(&self) -> f64;
}

/// splitmix64 over an atomic counter: lock-free, seeded at start.
#[derive(Debug)]
pub struct RandomSampler(AtomicU64);

impl RandomSampler {
    /// A sampler whose sequence `seed` fixes.
    pub fn seeded(seed: u64) -> RandomSampler {
        RandomSampler(AtomicU64::new(seed))
    }

    /// Seeded from the clock and the process id.
    pub fn from_entropy() -> RandomSampler {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        RandomSampler::seeded(nanos ^ (u64::from(std::process::id()) << 32))
    }
}

impl Sampler for RandomSampler {
    fn draw(&self) -> f64 {
        let mut z = self
            .0
            .fetch_add(0x9E37_79B9_7F4A_7C15, Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        // The top 53 bits as a fraction of 2^53: exactly representable.
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One record on its way to the sink.
#[derive(Debug, Clone)]
pub struct Record {
    /// When the decision was made, unix milliseconds.
    pub time_ms: i64,
    /// The realm, when the request got as far as naming one.
    pub realm: Option<String>,
    /// The JSON object, without a newline.
    pub line: String,
}

/// A destination for lines (stdout, a file, or a test's). Called from the
/// decision log's own thread only, so it may block; a blocked sink fills
/// the buffer and further records are dropped, never a decision delayed.
pub trait Sink: Send {
    /// Write one record's line and its newline.
    fn write(&mut self, record: &Record) -> std::io::Result<()>;
    /// Make everything written so far reach its destination.
    fn flush(&mut self) -> std::io::Result<()>;
}

/// A sink handed in through [`Hooks`] (taken out once, by the log that
/// starts with it; `Hooks` stays `Clone`).
pub type InjectedSink = Arc<std::sync::Mutex<Option<Box<dyn Sink>>>>;

/// What a test (or an embedding program) may put in place of the host's
/// own clock, sampling draws, sink and S3 endpoint.
#[derive(Debug, Clone)]
pub struct Hooks {
    /// The clock records are dated by.
    pub clock: Arc<dyn Clock>,
    /// The sampling draws.
    pub sampler: Arc<dyn Sampler>,
    /// A sink used instead of the configured `stdout` / `file:` one (a
    /// configured `s3://` sink is not replaced).
    pub sink: Option<InjectedSink>,
    /// The S3 endpoint (else the standard AWS settings).
    pub s3_endpoint: Option<String>,
    /// This host's name in S3 keys (else the host name and process id).
    pub host_id: Option<String>,
}

impl std::fmt::Debug for dyn Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sink")
    }
}

impl Default for Hooks {
    fn default() -> Hooks {
        Hooks {
            clock: Arc::new(SystemClock),
            sampler: Arc::new(RandomSampler::from_entropy()),
            sink: None,
            s3_endpoint: None,
            host_id: None,
        }
    }
}

impl Hooks {
    /// Hooks with `sink` in place of the configured line sink.
    pub fn with_sink(mut self, sink: Box<dyn Sink>) -> Hooks {
        self.sink = Some(Arc::new(std::sync::Mutex::new(Some(sink))));
        self
    }
}

/// Where the lines go, as `decision_log` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Standard output.
    Stdout,
    /// A file, rotated by size.
    File(PathBuf),
    /// `s3://bucket/prefix`, as `object_store::open` takes it.
    S3(String),
}

impl Target {
    /// Parse the `decision_log` setting.
    pub fn parse(text: &str) -> Result<Target, String> {
        let text = text.trim();
        if text == "stdout" {
            Ok(Target::Stdout)
        } else if let Some(path) = text.strip_prefix("file:") {
            match path.trim() {
                "" => Err("file: names no path".into()),
                p => Ok(Target::File(PathBuf::from(p))),
            }
        } else if let Some(rest) = text.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let prefix = prefix.trim_matches('/');
            if bucket.is_empty() {
                return Err(format!("{text}: no bucket"));
            }
            if !prefix.is_empty() && object_store::validate_key(prefix).is_err() {
                return Err(format!(
                    "{text}: the prefix must be segments of A-Z a-z 0-9 . _ -"
                ));
            }
            Ok(Target::S3(text.to_owned()))
        } else {
            Err(format!(
                "{text:?} is not a decision log sink (stdout, file:PATH, s3://bucket/prefix)"
            ))
        }
    }
}

/// What one realm's records may carry beyond the fixed fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allow {
    /// Top-level context attributes.
    pub context: Vec<String>,
    /// The principal entity's attributes.
    pub principal: Vec<String>,
    /// The resource entity's attributes.
    pub resource: Vec<String>,
    /// A verified token's claims.
    pub claim: Vec<String>,
}

impl Allow {
    fn is_empty(&self) -> bool {
        self.context.is_empty()
            && self.principal.is_empty()
            && self.resource.is_empty()
            && self.claim.is_empty()
    }
}

/// The allowlist by realm (`*`: every realm), as `decision_log_allowlist`
/// lists it.
pub fn parse_allowlist(entries: &[String]) -> Result<HashMap<String, Allow>, String> {
    let mut out: HashMap<String, Allow> = HashMap::new();
    for entry in entries {
        let bad = || {
            format!(
                "{entry:?}: an allowlist entry is REALM:context.NAME, REALM:principal.NAME, \
                 REALM:resource.NAME or REALM:claim.NAME (REALM * for every realm)"
            )
        };
        let (realm, field) = entry.rsplit_once(':').ok_or_else(bad)?;
        let (kind, name) = field.trim().split_once('.').ok_or_else(bad)?;
        let (realm, name) = (realm.trim(), name.trim());
        if realm.is_empty() || name.is_empty() {
            return Err(bad());
        }
        let allow = out.entry(realm.to_owned()).or_default();
        let list = match kind {
            "context" => &mut allow.context,
            "principal" => &mut allow.principal,
            "resource" => &mut allow.resource,
            "claim" => &mut allow.claim,
            _ => return Err(bad()),
        };
        list.push(name.to_owned());
    }
    Ok(out)
}

/// The decision log settings, checked.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The sink.
    pub target: Target,
    /// Share of decisions kept, 0 to 1.
    pub sample_rate: f64,
    /// Keep every denial.
    pub denies: bool,
    /// Keep every error.
    pub errors: bool,
    /// Buffer capacity, records (at least 1).
    pub buffer: usize,
    /// File rotation size, bytes.
    pub file_max_bytes: u64,
    /// Rotated files kept.
    pub file_keep: usize,
    /// S3: the longest a batch waits.
    pub s3_interval: Duration,
    /// S3: records per object, at most.
    pub s3_max_batch: usize,
    /// The allowlist by realm.
    pub allow: HashMap<String, Allow>,
}

impl Settings {
    /// The decision log settings of `config`; `None` when logs are off.
    /// The message names the setting that is wrong.
    pub fn from_config(config: &Config) -> Result<Option<Settings>, String> {
        let allow = parse_allowlist(&config.decision_log_allowlist)
            .map_err(|m| format!("decision_log_allowlist: {m}"))?;
        let rate = config.decision_log_sample_rate;
        if !(0.0..=1.0).contains(&rate) {
            return Err(format!(
                "decision_log_sample_rate: {rate} is not between 0 and 1"
            ));
        }
        if config.decision_log_buffer == 0 {
            return Err("decision_log_buffer: must be at least 1".into());
        }
        if config.decision_log_s3_max_batch == 0 {
            return Err("decision_log_s3_max_batch: must be at least 1".into());
        }
        if config.decision_log_s3_interval_seconds == 0 {
            return Err("decision_log_s3_interval_seconds: must be at least 1".into());
        }
        if config.decision_log_file_max_bytes == 0 {
            return Err("decision_log_file_max_bytes: must be at least 1".into());
        }
        let Some(target) = &config.decision_log else {
            return Ok(None);
        };
        let target = Target::parse(target).map_err(|m| format!("decision_log: {m}"))?;
        Ok(Some(Settings {
            target,
            sample_rate: rate,
            denies: config.decision_log_denies,
            errors: config.decision_log_errors,
            buffer: config.decision_log_buffer,
            file_max_bytes: config.decision_log_file_max_bytes,
            file_keep: config.decision_log_file_keep,
            s3_interval: Duration::from_secs(config.decision_log_s3_interval_seconds),
            s3_max_batch: config.decision_log_s3_max_batch,
            allow,
        }))
    }
}

/// The counters; every one an atomic, moved only while logs are on.
#[derive(Debug, Default)]
struct Counters {
    decisions: AtomicU64,
    sampled_out: AtomicU64,
    dropped: AtomicU64,
    enqueued: AtomicU64,
    logged: AtomicU64,
    failed: AtomicU64,
    write_failures: AtomicU64,
    upload_failures: AtomicU64,
}

/// The counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Decisions offered to the log.
    pub decisions: u64,
    /// Left out by sampling.
    pub sampled_out: u64,
    /// Dropped because the buffer was full.
    pub dropped: u64,
    /// Written by the sink (for S3: in an uploaded object).
    pub logged: u64,
    /// Lost to a failed write or a given-up upload.
    pub failed: u64,
    /// In the buffer or being written.
    pub pending: u64,
    /// Sink writes that failed (each losing the records written since the
    /// last flush).
    pub write_failures: u64,
    /// S3 batches given up after their retries.
    pub upload_failures: u64,
}

impl Counters {
    fn counts(&self) -> Counts {
        // Read the later stages first: a record moving on between two
        // loads is then counted twice rather than not at all, and pending
        // never goes negative.
        let logged = self.logged.load(Relaxed);
        let failed = self.failed.load(Relaxed);
        let enqueued = self.enqueued.load(Relaxed);
        Counts {
            decisions: self.decisions.load(Relaxed),
            sampled_out: self.sampled_out.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            logged,
            failed,
            pending: enqueued.saturating_sub(logged + failed),
            write_failures: self.write_failures.load(Relaxed),
            upload_failures: self.upload_failures.load(Relaxed),
        }
    }
}

/// The wire protocol a decision was asked in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `/v1/...`.
    V1,
    /// OpenID AuthZEN.
    Authzen,
    /// The Verified Permissions wire protocol.
    Avp,
    /// `/v1/forward-auth`.
    ForwardAuth,
}

impl Protocol {
    fn as_str(self) -> &'static str {
        match self {
            Protocol::V1 => "v1",
            Protocol::Authzen => "authzen",
            Protocol::Avp => "avp",
            Protocol::ForwardAuth => "forward_auth",
        }
    }
}

/// Who asked, as far as the request says.
#[derive(Debug, Clone, Copy)]
pub enum Principal<'a> {
    /// Named by the request.
    Entity(&'a EntityRef),
    /// Stood for by a token: its `sub` (and allowlisted claims) are logged
    /// only once the token has been accepted; the token itself never.
    Token(&'a str),
    /// Not known (the request failed before naming one).
    Unknown,
}

/// What a decision came to.
#[derive(Debug, Clone, Copy)]
pub enum Verdict<'a> {
    /// An answer from the realm.
    Answer(&'a Answer),
    /// A denial before the realm was asked (forward-auth: no token, no
    /// route...), with its reason.
    Deny(&'a str),
    /// Not answered: the problem kind (`invalid_json`, `no_bundle`, ...).
    Error(&'a str),
}

/// One decision, as the handler that made it knows it. Only references:
/// building one costs nothing; the line is built only when kept.
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    /// The protocol.
    pub protocol: Protocol,
    /// The endpoint or operation (`/v1/is_authorized`,
    /// `VerifiedPermissions.IsAuthorized`).
    pub endpoint: &'static str,
    /// The request's headers (only `X-Request-ID` and `traceparent` are
    /// read).
    pub headers: Option<&'a HeaderMap>,
    /// The realm, when picked.
    pub realm: Option<&'a str>,
    /// The snapshot that answered (for the principal's directory
    /// attributes).
    pub snapshot: Option<&'a Snapshot>,
    /// Who.
    pub principal: Principal<'a>,
    /// What.
    pub action: Option<&'a EntityRef>,
    /// On what.
    pub resource: Option<&'a EntityRef>,
    /// The request's context.
    pub context: Option<&'a Value>,
    /// The request's own entities.
    pub entities: &'a [Value],
    /// The outcome.
    pub verdict: Verdict<'a>,
    /// When the request started.
    pub started: Instant,
}

impl<'a> Event<'a> {
    /// An event with nothing known but the protocol and the verdict.
    pub fn new(
        protocol: Protocol,
        endpoint: &'static str,
        verdict: Verdict<'a>,
        started: Instant,
    ) -> Event<'a> {
        Event {
            protocol,
            endpoint,
            headers: None,
            realm: None,
            snapshot: None,
            principal: Principal::Unknown,
            action: None,
            resource: None,
            context: None,
            entities: &[],
            verdict,
            started,
        }
    }

    /// With the request's headers.
    pub fn headers(mut self, headers: &'a HeaderMap) -> Self {
        self.headers = Some(headers);
        self
    }

    /// With the realm and its snapshot.
    pub fn realm(mut self, realm: &'a str, snapshot: Option<&'a Snapshot>) -> Self {
        self.realm = Some(realm);
        self.snapshot = snapshot;
        self
    }

    /// With a by-id request's principal, action, resource, context and
    /// entities.
    pub fn request(mut self, req: &'a pdp_core::decision::Request) -> Self {
        self.principal = Principal::Entity(&req.principal);
        self.action = Some(&req.action);
        self.resource = Some(&req.resource);
        self.context = Some(&req.context);
        self.entities = &req.entities;
        self
    }

    /// With a token request's token (for its `sub`), action, resource,
    /// context and entities.
    pub fn token_request(mut self, req: &'a pdp_core::decision::TokenRequest) -> Self {
        self.principal = Principal::Token(&req.token);
        self.action = Some(&req.action);
        self.resource = Some(&req.resource);
        self.context = Some(&req.context);
        self.entities = &req.entities;
        self
    }
}

/// A line of the decision log: the record shape (README, "Decision logs").
#[derive(Debug, Serialize)]
pub struct Line<'a> {
    /// Unix milliseconds, from the host's clock.
    pub time: i64,
    /// The realm, or null when the request failed before naming one.
    pub realm: Option<&'a str>,
    /// The bundle revision that answered.
    pub revision: Option<u64>,
    /// `X-Request-ID`, when sent.
    pub request_id: Option<&'a str>,
    /// W3C `traceparent`, when sent.
    pub traceparent: Option<&'a str>,
    /// `v1`, `authzen`, `avp` or `forward_auth`.
    pub protocol: &'static str,
    /// The endpoint or AVP operation.
    pub endpoint: &'static str,
    /// Whether the principal came from a token.
    pub token: bool,
    /// Who (for a token: its `sub`, once accepted).
    pub principal: Option<std::borrow::Cow<'a, EntityRef>>,
    /// What.
    pub action: Option<&'a EntityRef>,
    /// On what.
    pub resource: Option<&'a EntityRef>,
    /// `Allow`, `Deny` or `Error`.
    pub decision: &'static str,
    /// The reason (the real one: a by-id answer's reason that callers
    /// without the detail see as `no_permit` is logged as it is), or the
    /// problem kind of an error.
    pub reason: Why<'a>,
    /// The policies that determined the decision.
    pub determining_policies: &'a [String],
    /// Policies that failed to evaluate (ids only: their messages may
    /// quote the request).
    pub errored_policies: Vec<&'a str>,
    /// Microseconds from the request's start to the decision.
    pub latency_us: u64,
    /// Allowlisted context attributes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<Map<String, Value>>,
    /// Allowlisted principal attributes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal_attributes: Option<Map<String, Value>>,
    /// Allowlisted resource attributes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_attributes: Option<Map<String, Value>>,
    /// Allowlisted claims of the verified token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claims: Option<Map<String, Value>>,
}

/// A record's reason: an answer's, written straight from its `Display`
/// (no string built for it), or a given text.
#[derive(Debug, Clone, Copy)]
pub enum Why<'a> {
    /// The answer's reason.
    Reason(&'a Reason),
    /// A reason or problem kind as text.
    Text(&'a str),
}

impl Serialize for Why<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Why::Reason(r) => s.collect_str(r),
            Why::Text(t) => s.serialize_str(t),
        }
    }
}

/// A running decision log: the buffer's sending end, the counters and the
/// drain thread's shutdown handle.
#[derive(Debug)]
pub struct DecisionLog {
    settings: Settings,
    clock: Arc<dyn Clock>,
    sampler: Arc<dyn Sampler>,
    counters: Arc<Counters>,
    tx: tokio::sync::mpsc::Sender<Record>,
    shutdown: Arc<tokio::sync::Notify>,
    done: tokio::sync::watch::Receiver<bool>,
}

/// How the drain writes.
enum Drain {
    Lines(Box<dyn Sink>),
    S3 {
        location: String,
        connect: Connect,
        interval: Duration,
        max_batch: usize,
        host: String,
    },
}

impl DecisionLog {
    /// Start the decision log `config` asks for (its thread, and for a
    /// file its first open); `None` when logs are off.
    pub fn start(config: &Config, hooks: Hooks) -> Result<Option<DecisionLog>, String> {
        let Some(settings) = Settings::from_config(config)? else {
            return Ok(None);
        };
        let injected = hooks
            .sink
            .as_ref()
            .and_then(|s| s.lock().ok().and_then(|mut s| s.take()));
        let drain = match (&settings.target, injected) {
            (Target::S3(location), _) => Drain::S3 {
                location: location.clone(),
                connect: Connect {
                    s3_force_path_style: config.s3_force_path_style,
                    timeout: Duration::from_millis(config.source_timeout_ms),
                    // This module retries on its own, with backoff.
                    max_attempts: 1,
                    endpoint: hooks.s3_endpoint.clone(),
                },
                interval: settings.s3_interval,
                max_batch: settings.s3_max_batch,
                host: hooks.host_id.clone().unwrap_or_else(host_id),
            },
            (_, Some(sink)) => Drain::Lines(sink),
            (Target::Stdout, None) => Drain::Lines(Box::new(Stdout(
                std::io::BufWriter::with_capacity(1 << 16, std::io::stdout()),
            ))),
            (Target::File(path), None) => Drain::Lines(Box::new(
                FileSink::open(path, settings.file_max_bytes, settings.file_keep)
                    .map_err(|e| format!("decision_log: {}: {e}", path.display()))?,
            )),
        };
        let (tx, rx) = tokio::sync::mpsc::channel(settings.buffer);
        let counters = Arc::new(Counters::default());
        let shutdown = Arc::new(tokio::sync::Notify::new());
        let (done_tx, done) = tokio::sync::watch::channel(false);
        {
            let counters = Arc::clone(&counters);
            let shutdown = Arc::clone(&shutdown);
            std::thread::Builder::new()
                .name("decision-log".into())
                .spawn(move || {
                    match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt.block_on(async move {
                            match drain {
                                Drain::Lines(sink) => {
                                    drain_lines(rx, sink, &counters, &shutdown).await;
                                }
                                Drain::S3 {
                                    location,
                                    connect,
                                    interval,
                                    max_batch,
                                    host,
                                } => {
                                    let uploader = Uploader {
                                        location,
                                        connect,
                                        host,
                                        seq: 0,
                                    };
                                    drain_s3(
                                        rx, uploader, interval, max_batch, &counters, &shutdown,
                                    )
                                    .await;
                                }
                            }
                        }),
                        Err(e) => {
                            tracing::error!(error = %e, "decision log: no runtime for its thread")
                        }
                    }
                    let _ = done_tx.send(true);
                })
                .map_err(|e| format!("decision_log: cannot start its thread: {e}"))?;
        }
        Ok(Some(DecisionLog {
            settings,
            clock: hooks.clock,
            sampler: hooks.sampler,
            counters,
            tx,
            shutdown,
            done,
        }))
    }

    /// Count one decision and, if it is kept, hand its line to the sink
    /// without waiting: a full buffer drops it (counted).
    pub fn offer(&self, ev: &Event<'_>) {
        let c = &self.counters;
        c.decisions.fetch_add(1, Relaxed);
        let (deny, error) = match ev.verdict {
            Verdict::Answer(a) => (a.decision == Decision::Deny, !a.errors.is_empty()),
            Verdict::Deny(_) => (true, false),
            Verdict::Error(_) => (false, true),
        };
        let forced = (self.settings.denies && deny) || (self.settings.errors && error);
        let rate = self.settings.sample_rate;
        let kept = forced || rate >= 1.0 || (rate > 0.0 && self.sampler.draw() < rate);
        if !kept {
            c.sampled_out.fetch_add(1, Relaxed);
            return;
        }
        let record = self.record(ev);
        match self.tx.try_send(record) {
            Ok(()) => c.enqueued.fetch_add(1, Relaxed),
            Err(_) => c.dropped.fetch_add(1, Relaxed),
        };
    }

    /// The counters now.
    pub fn counts(&self) -> Counts {
        self.counters.counts()
    }

    /// Ask the drain to write (or upload) everything buffered and stop,
    /// and wait up to `wait` for it; whether it finished. Records of
    /// decisions offered once it has stopped are counted as dropped.
    pub async fn close(&self, wait: Duration) -> bool {
        self.shutdown.notify_one();
        let mut done = self.done.clone();
        matches!(
            tokio::time::timeout(wait, done.wait_for(|d| *d)).await,
            Ok(Ok(_))
        )
    }

    fn record(&self, ev: &Event<'_>) -> Record {
        let allow = ev.realm.and_then(|r| self.allow(r));
        let (decision, reason, revision, policies, errored): (_, Why<'_>, _, _, _) =
            match ev.verdict {
                Verdict::Answer(a) => (
                    match a.decision {
                        Decision::Allow => "Allow",
                        Decision::Deny => "Deny",
                    },
                    Why::Reason(&a.reason),
                    Some(a.revision),
                    a.determining_policies.as_slice(),
                    a.errors.iter().map(|e| e.policy_id.as_str()).collect(),
                ),
                Verdict::Deny(r) => (
                    "Deny",
                    Why::Text(r),
                    ev.snapshot.map(Snapshot::revision),
                    &[][..],
                    Vec::new(),
                ),
                Verdict::Error(k) => (
                    "Error",
                    Why::Text(k),
                    ev.snapshot.map(Snapshot::revision),
                    &[][..],
                    Vec::new(),
                ),
            };
        // A token's subject and claims only once the realm accepted it.
        let accepted = match ev.verdict {
            Verdict::Answer(a) => !matches!(a.reason, Reason::Token(_) | Reason::StaleBundle),
            Verdict::Deny(_) | Verdict::Error(_) => false,
        };
        let claims = match ev.principal {
            Principal::Token(t) if accepted => crate::api::unverified_claims(t),
            _ => None,
        };
        let principal = match ev.principal {
            Principal::Entity(e) => Some(std::borrow::Cow::Borrowed(e)),
            Principal::Token(_) => claims
                .as_ref()
                .and_then(|c| c.get("sub"))
                .and_then(Value::as_str)
                .map(|sub| {
                    std::borrow::Cow::Owned(EntityRef {
                        ty: "User".into(),
                        id: sub.to_owned(),
                    })
                }),
            Principal::Unknown => None,
        };
        let header = |name: &str| {
            ev.headers
                .and_then(|h| h.get(name))
                .and_then(|v| v.to_str().ok())
                .map(cut)
        };
        let mut line = Line {
            time: self.clock.now_ms(),
            realm: ev.realm,
            revision,
            request_id: header("x-request-id"),
            traceparent: header("traceparent"),
            protocol: ev.protocol.as_str(),
            endpoint: ev.endpoint,
            token: matches!(ev.principal, Principal::Token(_)),
            principal,
            action: ev.action,
            resource: ev.resource,
            decision,
            reason,
            determining_policies: policies,
            errored_policies: errored,
            latency_us: u64::try_from(ev.started.elapsed().as_micros()).unwrap_or(u64::MAX),
            context: None,
            principal_attributes: None,
            resource_attributes: None,
            claims: None,
        };
        if let Some(allow) = allow {
            line.context = pick(
                &allow.context,
                ev.context.and_then(Value::as_object).into_iter().flatten(),
            );
            if let Some(p) = line.principal.as_deref() {
                let attrs = attributes(ev, p);
                line.principal_attributes = pick(&allow.principal, attrs.iter());
            }
            if let Some(r) = ev.resource {
                let attrs = attributes(ev, r);
                line.resource_attributes = pick(&allow.resource, attrs.iter());
            }
            if let Some(c) = claims.as_ref().and_then(Value::as_object) {
                line.claims = pick(&allow.claim, c.iter());
            }
        }
        Record {
            time_ms: line.time,
            realm: ev.realm.map(str::to_owned),
            line: {
                let mut out = Vec::with_capacity(512);
                match serde_json::to_writer(&mut out, &line) {
                    // serde_json writes UTF-8 only.
                    Ok(()) => String::from_utf8(out).unwrap_or_default(),
                    Err(_) => String::new(),
                }
            },
        }
    }

    /// The realm's allowlist and the one for every realm, merged; `None`
    /// when neither allows anything.
    fn allow(&self, realm: &str) -> Option<std::borrow::Cow<'_, Allow>> {
        use std::borrow::Cow;
        if self.settings.allow.is_empty() {
            return None;
        }
        let own = self.settings.allow.get(realm);
        let all = self.settings.allow.get("*");
        match (own, all) {
            (None, None) => None,
            (Some(a), None) | (None, Some(a)) => (!a.is_empty()).then_some(Cow::Borrowed(a)),
            (Some(a), Some(b)) => {
                let mut m = a.clone();
                m.context.extend(b.context.iter().cloned());
                m.principal.extend(b.principal.iter().cloned());
                m.resource.extend(b.resource.iter().cloned());
                m.claim.extend(b.claim.iter().cloned());
                Some(Cow::Owned(m))
            }
        }
    }
}

/// `text` cut to [`MAX_ID_BYTES`] at a character boundary.
fn cut(text: &str) -> &str {
    if text.len() <= MAX_ID_BYTES {
        return text;
    }
    let mut end = MAX_ID_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The members of `from` that `names` lists; `None` when none is there.
fn pick<'v>(
    names: &[String],
    from: impl Iterator<Item = (&'v String, &'v Value)>,
) -> Option<Map<String, Value>> {
    if names.is_empty() {
        return None;
    }
    let out: Map<String, Value> = from
        .filter(|(k, _)| names.iter().any(|n| n == *k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    (!out.is_empty()).then_some(out)
}

/// The attributes of `entity`: from the request's own entities, else the
/// realm's directory for a user, else the bundle's entities. Only for a
/// kept record whose realm allowlists an attribute of it.
fn attributes(ev: &Event<'_>, entity: &EntityRef) -> Map<String, Value> {
    for e in ev.entities {
        let uid = e.get("uid");
        let matches = uid.is_some_and(|u| {
            u.get("type").and_then(Value::as_str) == Some(entity.ty.as_str())
                && u.get("id").and_then(Value::as_str) == Some(entity.id.as_str())
        });
        if matches {
            return e
                .get("attrs")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
        }
    }
    if entity.ty == "User"
        && let Some(user) = ev.snapshot.and_then(|s| s.user(&entity.id))
    {
        return user.attrs();
    }
    ev.snapshot
        .and_then(|s| s.entity_attrs(entity))
        .unwrap_or_default()
}

/// This host's name in S3 keys: the host name (characters an object key
/// may not hold replaced) and the process id, so two processes on one host
/// never write the same key.
fn host_id() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let name: String = name
        .trim()
        .chars()
        .map(|c| match c {
            'A'..='Z' | 'a'..='z' | '0'..='9' | '.' | '_' | '-' => c,
            _ => '-',
        })
        .collect();
    let name = if name.is_empty() || name.starts_with('.') {
        "host".to_owned()
    } else {
        name
    };
    format!("{name}-{}", std::process::id())
}

/// Drain into a line sink: write what is there (up to
/// [`LINES_PER_WRITE`]), flush, count; at shutdown or when the log is
/// dropped, everything left, then stop.
async fn drain_lines(
    mut rx: tokio::sync::mpsc::Receiver<Record>,
    mut sink: Box<dyn Sink>,
    counters: &Counters,
    shutdown: &tokio::sync::Notify,
) {
    let mut batch = Vec::with_capacity(LINES_PER_WRITE);
    let mut closing = false;
    loop {
        if !closing {
            tokio::select! {
                biased;
                () = shutdown.notified() => closing = true,
                r = rx.recv() => match r {
                    Some(r) => batch.push(r),
                    None => closing = true,
                },
            }
        }
        while batch.len() < LINES_PER_WRITE {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        if batch.is_empty() && closing {
            break;
        }
        let written = batch
            .iter()
            .try_for_each(|r| sink.write(r))
            .and_then(|()| sink.flush());
        let n = batch.len() as u64;
        match written {
            Ok(()) => counters.logged.fetch_add(n, Relaxed),
            Err(e) => {
                tracing::warn!(error = %e, records = n, "decision log: write failed; records lost");
                counters.write_failures.fetch_add(1, Relaxed);
                counters.failed.fetch_add(n, Relaxed)
            }
        };
        batch.clear();
        if !closing && n < LINES_PER_WRITE as u64 {
            closing = linger(shutdown).await;
        }
    }
}

/// Wait [`LINGER`], or until shutdown is asked for (then `true`).
async fn linger(shutdown: &tokio::sync::Notify) -> bool {
    tokio::select! {
        () = shutdown.notified() => true,
        () = tokio::time::sleep(LINGER) => false,
    }
}

/// Standard output, buffered between flushes.
struct Stdout(std::io::BufWriter<std::io::Stdout>);

impl Sink for Stdout {
    fn write(&mut self, record: &Record) -> std::io::Result<()> {
        use std::io::Write as _;
        self.0.write_all(record.line.as_bytes())?;
        self.0.write_all(b"\n")
    }
    fn flush(&mut self) -> std::io::Result<()> {
        use std::io::Write as _;
        self.0.flush()
    }
}

/// A file appended to and rotated by size: `PATH` becomes `PATH.1`, `.1`
/// becomes `.2`, ... up to `.keep`; older ones are deleted.
#[derive(Debug)]
pub struct FileSink {
    path: PathBuf,
    max_bytes: u64,
    keep: usize,
    file: Option<std::io::BufWriter<std::fs::File>>,
    size: u64,
}

impl FileSink {
    /// Open (create, append to) `path`.
    pub fn open(path: &Path, max_bytes: u64, keep: usize) -> std::io::Result<FileSink> {
        let mut sink = FileSink {
            path: path.to_owned(),
            max_bytes,
            keep,
            file: None,
            size: 0,
        };
        sink.reopen()?;
        Ok(sink)
    }

    fn reopen(&mut self) -> std::io::Result<()> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = file.metadata()?.len();
        self.file = Some(std::io::BufWriter::with_capacity(1 << 16, file));
        Ok(())
    }

    /// `PATH` with `.n` appended.
    fn numbered(&self, n: usize) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(format!(".{n}"));
        PathBuf::from(p)
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        use std::io::Write as _;
        if let Some(mut f) = self.file.take() {
            f.flush()?;
        }
        let gone = |r: std::io::Result<()>| match r {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
        if self.keep == 0 {
            gone(std::fs::remove_file(&self.path))?;
        } else {
            gone(std::fs::remove_file(self.numbered(self.keep)))?;
            for n in (1..self.keep).rev() {
                gone(std::fs::rename(self.numbered(n), self.numbered(n + 1)))?;
            }
            gone(std::fs::rename(&self.path, self.numbered(1)))?;
        }
        self.reopen()
    }
}

impl Sink for FileSink {
    fn write(&mut self, record: &Record) -> std::io::Result<()> {
        use std::io::Write as _;
        let n = record.line.len() as u64 + 1;
        if self.size > 0 && self.size + n > self.max_bytes {
            self.rotate()?;
        }
        if self.file.is_none() {
            self.reopen()?;
        }
        let Some(f) = self.file.as_mut() else {
            return Err(std::io::Error::other("decision log file not open"));
        };
        let written = f
            .write_all(record.line.as_bytes())
            .and_then(|()| f.write_all(b"\n"));
        if written.is_err() {
            // Start again from a fresh handle on the next write.
            self.file = None;
        }
        written?;
        self.size += n;
        Ok(())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        use std::io::Write as _;
        match self.file.as_mut() {
            Some(f) => {
                let r = f.flush();
                if r.is_err() {
                    self.file = None;
                }
                r
            }
            None => Ok(()),
        }
    }
}

/// One realm's records waiting for upload.
struct Batch {
    start_ms: i64,
    count: u64,
    bytes: Vec<u8>,
}

/// Uploads batches create-only under time-partitioned keys.
struct Uploader {
    location: String,
    connect: Connect,
    host: String,
    seq: u64,
}

/// The S3 key of a batch: `<realm>/YYYY/MM/DD/HH/<start-ms>-<host>-<seq>.jsonl`
/// (under the store's prefix), the hour of its first record.
pub fn s3_key(realm: &str, start_ms: i64, host: &str, seq: u64) -> String {
    let days = start_ms.div_euclid(86_400_000);
    let hour = start_ms.rem_euclid(86_400_000) / 3_600_000;
    let (y, m, d) = civil_from_days(days);
    format!("{realm}/{y:04}/{m:02}/{d:02}/{hour:02}/{start_ms}-{host}-{seq}.jsonl")
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The key segment of a record's realm.
fn partition(realm: Option<&str>) -> String {
    match realm {
        Some(r) if object_store::validate_key(r).is_ok() && !r.contains('/') => r.to_owned(),
        Some(_) => "_invalid".to_owned(),
        None => "_none".to_owned(),
    }
}

impl Uploader {
    /// Upload `batch` for `realm`, retrying with backoff; counts what
    /// happened.
    async fn upload(
        &mut self,
        store: Option<&dyn ObjectStore>,
        realm: &str,
        batch: Batch,
        counters: &Counters,
    ) {
        let mut delay = S3_BACKOFF;
        for attempt in 0..=S3_RETRIES {
            if attempt > 0 {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            let Some(store) = store else { break };
            let key = s3_key(realm, batch.start_ms, &self.host, self.seq);
            self.seq += 1;
            match store.put(&key, &batch.bytes, Condition::IfAbsent).await {
                Ok(Put::Written(_)) => {
                    counters.logged.fetch_add(batch.count, Relaxed);
                    return;
                }
                // Taken (a restarted process reusing a pid in the same
                // millisecond): the next sequence number.
                Ok(Put::PreconditionFailed) => {}
                Err(e) => {
                    tracing::warn!(error = %e, key, attempt, "decision log: upload failed");
                }
            }
        }
        tracing::error!(
            records = batch.count,
            realm,
            "decision log: upload given up; records dropped"
        );
        counters.upload_failures.fetch_add(1, Relaxed);
        counters.failed.fetch_add(batch.count, Relaxed);
    }
}

/// Drain into S3: records gather in a batch per realm, uploaded when it
/// holds `max_batch` records, when its first record has waited `interval`,
/// and at shutdown.
async fn drain_s3(
    mut rx: tokio::sync::mpsc::Receiver<Record>,
    mut up: Uploader,
    interval: Duration,
    max_batch: usize,
    counters: &Counters,
    shutdown: &tokio::sync::Notify,
) {
    let store = match object_store::open(&up.location, &up.connect).await {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::error!(error = %e, "decision log: cannot open the S3 store");
            None
        }
    };
    let store = store.as_deref();
    let mut batches: BTreeMap<String, Batch> = BTreeMap::new();
    // When the oldest batch is due.
    let mut due: Option<tokio::time::Instant> = None;
    let mut closing = false;
    loop {
        let wake = due;
        let record = if closing {
            None
        } else {
            tokio::select! {
            biased;
            () = shutdown.notified() => { closing = true; None }
            () = tokio::time::sleep_until(wake.unwrap_or_else(tokio::time::Instant::now)), if wake.is_some() => {
                for (realm, batch) in std::mem::take(&mut batches) {
                    up.upload(store, &realm, batch, counters).await;
                }
                due = None;
                None
            }
            r = rx.recv() => match r {
                Some(r) => Some(r),
                None => { closing = true; None }
            },
            }
        };
        let mut next = record;
        // What is there, a bounded number at a time (so that a steady
        // stream does not keep the timer or a shutdown waiting); all of it
        // once closing.
        let mut taken = 0;
        while closing || taken < LINES_PER_WRITE {
            let Some(r) = next.take().or_else(|| rx.try_recv().ok()) else {
                break;
            };
            taken += 1;
            let realm = partition(r.realm.as_deref());
            let batch = batches.entry(realm.clone()).or_insert_with(|| Batch {
                start_ms: r.time_ms,
                count: 0,
                bytes: Vec::new(),
            });
            batch.bytes.extend_from_slice(r.line.as_bytes());
            batch.bytes.push(b'\n');
            batch.count += 1;
            if due.is_none() {
                due = Some(tokio::time::Instant::now() + interval);
            }
            if batch.count >= max_batch as u64
                && let Some(full) = batches.remove(&realm)
            {
                up.upload(store, &realm, full, counters).await;
            }
            if !closing && batches.is_empty() {
                due = None;
            }
        }
        if closing {
            // Everything buffered has been taken (above, without bound).
            break;
        }
        if taken < LINES_PER_WRITE {
            // A shutdown asked for meanwhile: one more pass takes the rest.
            closing = linger(shutdown).await;
        }
    }
    for (realm, batch) in std::mem::take(&mut batches) {
        up.upload(store, &realm, batch, counters).await;
    }
}

/// Append the decision log counters in Prometheus text format (zeros when
/// logs are off).
pub fn render(log: Option<&DecisionLog>, out: &mut String) {
    use std::fmt::Write as _;
    let c = log.map(DecisionLog::counts).unwrap_or_default();
    let _ = writeln!(
        out,
        "# HELP gatehouse_decision_log_enabled Whether decision logs are on.\n\
         # TYPE gatehouse_decision_log_enabled gauge\n\
         gatehouse_decision_log_enabled {}",
        u8::from(log.is_some())
    );
    out.push_str(
        "# HELP gatehouse_decision_log_decisions_total Decisions offered to the decision log.\n\
         # TYPE gatehouse_decision_log_decisions_total counter\n",
    );
    let _ = writeln!(
        out,
        "gatehouse_decision_log_decisions_total {}",
        c.decisions
    );
    out.push_str(
        "# HELP gatehouse_decision_log_records_total What became of each decision's record.\n\
         # TYPE gatehouse_decision_log_records_total counter\n",
    );
    for (name, v) in [
        ("sampled_out", c.sampled_out),
        ("dropped", c.dropped),
        ("logged", c.logged),
        ("failed", c.failed),
    ] {
        let _ = writeln!(
            out,
            "gatehouse_decision_log_records_total{{result=\"{name}\"}} {v}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP gatehouse_decision_log_pending Records in the buffer or being written.\n\
         # TYPE gatehouse_decision_log_pending gauge\n\
         gatehouse_decision_log_pending {}\n\
         # HELP gatehouse_decision_log_write_failures_total Sink writes that failed.\n\
         # TYPE gatehouse_decision_log_write_failures_total counter\n\
         gatehouse_decision_log_write_failures_total {}\n\
         # HELP gatehouse_decision_log_upload_failures_total S3 batches given up after retries.\n\
         # TYPE gatehouse_decision_log_upload_failures_total counter\n\
         gatehouse_decision_log_upload_failures_total {}",
        c.pending, c.write_failures, c.upload_failures
    );
}

/// The decision log's part of `/v1/status`.
pub fn status(log: Option<&DecisionLog>) -> Value {
    match log {
        None => serde_json::json!({"enabled": false}),
        Some(l) => {
            let mut v = serde_json::to_value(l.counts()).unwrap_or(Value::Null);
            if let Some(m) = v.as_object_mut() {
                m.insert("enabled".into(), Value::Bool(true));
                m.insert(
                    "sample_rate".into(),
                    serde_json::json!(l.settings.sample_rate),
                );
            }
            v
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_partitioned_by_the_hour_of_the_first_record() {
        // 2026-12-07T23:59:59.999Z and the next millisecond.
        let t = 1_796_687_999_999;
        assert_eq!(
            s3_key("acme", t, "h-1", 7),
            "acme/2026/12/07/23/1796687999999-h-1-7.jsonl"
        );
        assert_eq!(
            s3_key("acme", t + 1, "h-1", 0),
            "acme/2026/12/08/00/1796688000000-h-1-0.jsonl"
        );
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn sinks_and_allowlists_parse_or_are_refused() {
        assert_eq!(Target::parse("stdout"), Ok(Target::Stdout));
        assert_eq!(
            Target::parse("file:/var/log/d.log"),
            Ok(Target::File("/var/log/d.log".into()))
        );
        assert_eq!(
            Target::parse("s3://b/logs/edge"),
            Ok(Target::S3("s3://b/logs/edge".into()))
        );
        for bad in [
            "",
            "file:",
            "s3://",
            "s3://b/../x",
            "syslog",
            "/var/log/d.log",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
        let a = parse_allowlist(&[
            "acme:context.mfa".into(),
            "acme:principal.department".into(),
            "*:claim.email".into(),
        ])
        .unwrap();
        assert_eq!(a["acme"].context, ["mfa"]);
        assert_eq!(a["acme"].principal, ["department"]);
        assert_eq!(a["*"].claim, ["email"]);
        for bad in [
            "mfa",
            "acme:mfa",
            "acme:headers.authorization",
            ":context.x",
            "a:context.",
        ] {
            assert!(parse_allowlist(&[bad.into()]).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_sampler_is_uniform_enough_and_repeatable() {
        let a = RandomSampler::seeded(1);
        let b = RandomSampler::seeded(1);
        let draws: Vec<f64> = (0..10_000).map(|_| a.draw()).collect();
        assert!(draws.iter().all(|d| (0.0..1.0).contains(d)));
        assert!(
            draws
                .iter()
                .zip((0..).map(|_| b.draw()))
                .all(|(x, y)| *x == y)
        );
        let under = draws.iter().filter(|d| **d < 0.25).count();
        assert!((2_200..2_800).contains(&under), "{under}");
    }

    #[test]
    fn a_file_rotates_by_size_and_keeps_n_files() {
        let dir = std::env::temp_dir().join(format!("gh-dlog-rot-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("decisions.log");
        let mut sink = FileSink::open(&path, 100, 2).unwrap();
        for i in 0..20 {
            let line = format!("{{\"n\":\"{i:04}\",\"pad\":\"{}\"}}", "x".repeat(20));
            sink.write(&Record {
                time_ms: 0,
                realm: None,
                line,
            })
            .unwrap();
        }
        sink.flush().unwrap();
        let read = |p: &Path| std::fs::read_to_string(p).unwrap();
        assert!(!dir.join("decisions.log.3").exists());
        let all = format!(
            "{}{}{}",
            read(&dir.join("decisions.log.2")),
            read(&dir.join("decisions.log.1")),
            read(&path)
        );
        let ns: Vec<u64> = all
            .lines()
            .map(|l| {
                let r: Value = serde_json::from_str(l).unwrap();
                r["n"].as_str().unwrap().parse().unwrap()
            })
            .collect();
        // 42 bytes a line: two lines a file, three files, the newest six.
        assert_eq!(ns, (14..20).collect::<Vec<_>>());
        for p in [path.clone(), dir.join("decisions.log.1")] {
            assert!(std::fs::metadata(&p).unwrap().len() <= 100);
        }
    }
}
