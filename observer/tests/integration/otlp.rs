//! The agent's OTLP push received by a real OTLP/HTTP receiver (a small
//! Python server decoding each ExportMetricsServiceRequest with the
//! official generated classes of PyPI's opentelemetry-proto): for one
//! reading, every series /metrics shows has an OTLP point of the same value
//! (histograms bucket by bucket, sum and count), of the matching type, and
//! the resource attributes of a real Go target carry its pid, executable
//! and Go version; an endpoint that hangs (the oldest requests dropped, at
//! most 8 waiting), then refuses (retried), then comes up gets the data
//! while /metrics answers well within the push's time-out throughout;
//! --otlp-header arrives; a 4xx is not retried; https works with
//! --otlp-ca-file and fails without it.

use std::{
    collections::{BTreeMap, HashMap},
    io::{BufRead as _, BufReader},
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant, SystemTime},
};

use serde_json::Value;
use testkit::{Target, require_root_or_skip};

use crate::util::{Scraper, cgo, free_port, gauge, loadgen, start_agent_with};

/// Pushes this often in the tests.
const INTERVAL_MS: &str = "300";
/// Everything a test waits for must happen within this.
const WITHIN: Duration = Duration::from_secs(90);
/// How long to wait for the receiver between two scrapes while pairing.
const PAIR_POLL: Duration = Duration::from_millis(100);
/// A scrape answers within this whatever the endpoint does (a scrape that
/// waited on a push would take the push's time-out, `PUSH_TIMEOUT_MS`).
const RESPONSIVE: Duration = Duration::from_secs(2);
/// The push time-out of the hanging-endpoint test.
const PUSH_TIMEOUT_MS: &str = "4000";
/// Series that are of the moment (per scrape or per push), not of the
/// reading: the agent's own CPU, memory, uptime and scrape time, and the
/// push's own counters.
const OF_THE_MOMENT: &[&str] = &[
    "goscope_agent_cpu_seconds_total",
    "goscope_agent_resident_memory_bytes",
    "goscope_agent_uptime_seconds",
    "goscope_agent_scrape_duration_seconds",
];
/// The labels every series of a watched process carries (the OTLP
/// resource); the others are data point attributes.
const TARGET_LABELS: &[&str] = &[
    "pid",
    "exe",
    "comm",
    "go_version",
    "cgroup",
    "container_id",
    "pod_uid",
    "pod",
    "namespace",
];

fn of_the_moment(name: &str) -> bool {
    OF_THE_MOMENT.contains(&name) || name.starts_with("goscope_otlp_")
}

fn unix_nanos(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// The Python of the venv scripts/setup.sh makes for the receiver.
fn receiver_python() -> PathBuf {
    let venv = std::env::var_os("GOSCOPE_OTLP_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/goscope/otlp-venv"));
    let python = venv.join("bin/python");
    assert!(
        python.exists(),
        "{} is missing: scripts/setup.sh installs the OTLP receiver's venv",
        python.display()
    );
    python
}

/// The receiver: one JSON line per request it decoded.
struct Receiver {
    child: Child,
    port: u16,
    lines: mpsc::Receiver<Value>,
}

impl Receiver {
    fn start(args: &[&str]) -> Self {
        let script = testkit::workspace_root().join("observer/tests/integration/otlp_receiver.py");
        let mut child = Command::new(receiver_python())
            .arg(&script)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", script.display()));
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let value: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("the receiver printed {line:?}: {e}"));
                if tx.send(value).is_err() {
                    break;
                }
            }
        });
        let ready = lines
            .recv_timeout(WITHIN)
            .expect("the OTLP receiver never said it listens");
        let port = ready["listening"].as_u64().expect("a listening line") as u16;
        Self { child, port, lines }
    }

    /// The next request, waiting at most `within`.
    fn next(&self, within: Duration) -> Option<Value> {
        let record = self.lines.recv_timeout(within).ok()?;
        assert!(
            record.get("error").is_none(),
            "the receiver could not decode a request: {record}"
        );
        Some(record)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A point's value: a number, or a histogram's cumulative buckets (upper
/// bound, count; +Inf last), sum and count.
#[derive(Clone, Debug, PartialEq)]
enum Point {
    Number(f64),
    Histogram {
        buckets: Vec<(f64, u64)>,
        sum: f64,
        count: u64,
    },
}

fn same(a: f64, b: f64) -> bool {
    a == b || (a.is_nan() && b.is_nan())
}

impl Point {
    fn agrees(&self, other: &Point) -> bool {
        match (self, other) {
            (Point::Number(a), Point::Number(b)) => same(*a, *b),
            (
                Point::Histogram {
                    buckets: a,
                    sum: sa,
                    count: ca,
                },
                Point::Histogram {
                    buckets: b,
                    sum: sb,
                    count: cb,
                },
            ) => {
                a.len() == b.len()
                    && a.iter()
                        .zip(b)
                        .all(|((la, na), (lb, nb))| same(*la, *lb) && na == nb)
                    && same(*sa, *sb)
                    && ca == cb
            }
            _ => false,
        }
    }
}

/// What identifies a series in both outputs: the metric, the process (by
/// pid; none for the agent's own) and the remaining labels.
type Key = (String, Option<u32>, BTreeMap<String, String>);

/// Every series of a reading, with its type (counter, gauge, histogram).
#[derive(Default)]
struct Reading {
    points: HashMap<Key, (String, Point)>,
    /// Per pid, the process's labels (Prometheus) or resource attributes.
    processes: HashMap<u32, BTreeMap<String, String>>,
}

/// Splits `name{k="v",...} value` (values unescaped).
fn parse_sample(line: &str) -> (String, BTreeMap<String, String>, f64) {
    let (series, value) = line.rsplit_once(' ').expect("a sample line");
    let value: f64 = value
        .parse()
        .unwrap_or_else(|e| panic!("{line:?}: value: {e}"));
    let Some((name, rest)) = series.split_once('{') else {
        return (series.to_string(), BTreeMap::new(), value);
    };
    let mut labels = BTreeMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        assert_eq!(chars.next(), Some('"'), "{line:?}");
        let mut text = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => text.push('\n'),
                    Some(other) => text.push(other),
                    None => panic!("{line:?}: dangling escape"),
                },
                '"' => break,
                c => text.push(c),
            }
        }
        labels.insert(key, text);
        match chars.next() {
            Some(',') => continue,
            Some('}') => break,
            other => panic!("{line:?}: {other:?} after a label"),
        }
    }
    (name.to_string(), labels, value)
}

/// A /metrics body as series.
fn prometheus_reading(text: &str) -> Reading {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut reading = Reading::default();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            types.insert(name.to_string(), kind.to_string());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (name, mut labels, value) = parse_sample(line);
        let (family, part) = match ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| Some((name.strip_suffix(s)?, *s)))
        {
            Some((family, part)) if types.get(family).is_some_and(|k| k == "histogram") => {
                (family.to_string(), Some(part))
            }
            _ => (name.clone(), None),
        };
        if of_the_moment(&family) {
            continue;
        }
        let kind = types
            .get(&family)
            .unwrap_or_else(|| panic!("{family} has no TYPE line"))
            .clone();
        let pid = labels.get("pid").map(|p| p.parse::<u32>().unwrap());
        if let Some(pid) = pid {
            let own: BTreeMap<String, String> = labels
                .iter()
                .filter(|(k, _)| TARGET_LABELS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            reading.processes.insert(pid, own);
            labels.retain(|k, _| !TARGET_LABELS.contains(&k.as_str()));
        }
        let le = match part {
            Some("_bucket") => Some(labels.remove("le").expect("a bucket without le")),
            _ => None,
        };
        let key = (family, pid, labels);
        match part {
            None => {
                reading.points.insert(key, (kind, Point::Number(value)));
            }
            Some(part) => {
                let entry = reading.points.entry(key).or_insert_with(|| {
                    (
                        kind,
                        Point::Histogram {
                            buckets: Vec::new(),
                            sum: f64::NAN,
                            count: u64::MAX,
                        },
                    )
                });
                let Point::Histogram {
                    buckets,
                    sum,
                    count,
                } = &mut entry.1
                else {
                    unreachable!()
                };
                match part {
                    "_bucket" => buckets.push((le.unwrap().parse().unwrap(), value as u64)),
                    "_sum" => *sum = value,
                    _ => *count = value as u64,
                }
            }
        }
    }
    reading
}

/// A JSON number, or the strings protobuf's JSON uses for 64-bit integers
/// and non-finite doubles.
fn number(value: &Value) -> f64 {
    match value {
        Value::Number(n) => n.as_f64().unwrap(),
        Value::String(s) => match s.as_str() {
            "NaN" => f64::NAN,
            "Infinity" => f64::INFINITY,
            "-Infinity" => f64::NEG_INFINITY,
            s => s.parse().unwrap_or_else(|e| panic!("{s:?}: {e}")),
        },
        // Proto3 JSON leaves zeros out.
        Value::Null => 0.0,
        other => panic!("not a number: {other}"),
    }
}

fn attributes(list: &Value) -> BTreeMap<String, String> {
    list.as_array()
        .into_iter()
        .flatten()
        .map(|kv| {
            let v = &kv["value"];
            let text = v["stringValue"]
                .as_str()
                .map(str::to_string)
                .or_else(|| v["intValue"].as_str().map(str::to_string))
                .unwrap_or_else(|| panic!("an attribute of another type: {kv}"));
            (kv["key"].as_str().unwrap().to_string(), text)
        })
        .collect()
}

/// Timestamps of one resource's points: (start, time) per point.
type Stamps = HashMap<Option<u32>, Vec<(u64, u64)>>;

/// An ExportMetricsServiceRequest (as JSON) as series, checking each
/// metric's temporality and monotonicity on the way.
fn otlp_reading(request: &Value) -> (Reading, Stamps) {
    let mut reading = Reading::default();
    let mut stamps = Stamps::new();
    for resource in request["resourceMetrics"].as_array().unwrap() {
        let attrs = attributes(&resource["resource"]["attributes"]);
        let pid = (attrs["service.name"] != "goscope-agent")
            .then(|| attrs["process.pid"].parse::<u32>().unwrap());
        if let Some(pid) = pid {
            reading.processes.insert(pid, attrs.clone());
        }
        for scope in resource["scopeMetrics"].as_array().unwrap() {
            assert_eq!(scope["scope"]["name"], "goscope");
            for metric in scope["metrics"].as_array().unwrap() {
                let name = metric["name"].as_str().unwrap().to_string();
                if of_the_moment(&name) {
                    continue;
                }
                let (kind, data) = if let Some(sum) = metric.get("sum") {
                    assert_eq!(sum["isMonotonic"], true, "{name}");
                    assert_eq!(
                        sum["aggregationTemporality"], "AGGREGATION_TEMPORALITY_CUMULATIVE",
                        "{name}"
                    );
                    ("counter", sum)
                } else if let Some(gauge) = metric.get("gauge") {
                    ("gauge", gauge)
                } else if let Some(h) = metric.get("histogram") {
                    assert_eq!(
                        h["aggregationTemporality"], "AGGREGATION_TEMPORALITY_CUMULATIVE",
                        "{name}"
                    );
                    ("histogram", h)
                } else {
                    panic!("{name}: neither sum, gauge nor histogram: {metric}");
                };
                for point in data["dataPoints"].as_array().unwrap() {
                    let value = if kind == "histogram" {
                        let counts: Vec<u64> = point["bucketCounts"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|c| number(c) as u64)
                            .collect();
                        let bounds: Vec<f64> = point["explicitBounds"]
                            .as_array()
                            .map(|b| b.iter().map(number).collect())
                            .unwrap_or_default();
                        assert_eq!(counts.len(), bounds.len() + 1, "{name}: {point}");
                        let mut cumulative = 0;
                        let mut buckets = Vec::new();
                        for (i, count) in counts.iter().enumerate() {
                            cumulative += count;
                            buckets.push((
                                bounds.get(i).copied().unwrap_or(f64::INFINITY),
                                cumulative,
                            ));
                        }
                        Point::Histogram {
                            buckets,
                            sum: number(&point["sum"]),
                            count: number(&point["count"]) as u64,
                        }
                    } else {
                        Point::Number(number(&point["asDouble"]))
                    };
                    if kind != "gauge" {
                        stamps.entry(pid).or_default().push((
                            number(&point["startTimeUnixNano"]) as u64,
                            number(&point["timeUnixNano"]) as u64,
                        ));
                    }
                    let key = (name.clone(), pid, attributes(&point["attributes"]));
                    let clash = reading
                        .points
                        .insert(key.clone(), (kind.to_string(), value));
                    assert!(clash.is_none(), "two points for {key:?}");
                }
            }
        }
    }
    (reading, stamps)
}

/// The reading's number a request or a body carries.
fn request_sequence(request: &Value) -> Option<u64> {
    request["resourceMetrics"]
        .as_array()?
        .iter()
        .flat_map(|r| r["scopeMetrics"].as_array().into_iter().flatten())
        .flat_map(|s| s["metrics"].as_array().into_iter().flatten())
        .find(|m| m["name"] == "goscope_agent_reading_sequence")
        .map(|m| number(&m["gauge"]["dataPoints"][0]["asDouble"]) as u64)
}

/// A scrape that answers 200 within `RESPONSIVE`.
fn scrape(scraper: &Scraper, during: &str) -> String {
    let (status, body, took) = scraper.get("/metrics");
    assert_eq!(status, 200, "scrape {during}: {body}");
    assert!(
        took <= RESPONSIVE,
        "scrape {during} took {took:?} (budget {RESPONSIVE:?})"
    );
    body
}

/// Scrapes until a push carries the reading of one of the scrapes (a push
/// reuses the reading a scrape just took); returns that body and request.
fn paired_reading(scraper: &Scraper, receiver: &Receiver) -> (String, Value) {
    let deadline = Instant::now() + WITHIN;
    let mut scraped: HashMap<u64, String> = HashMap::new();
    let mut pushed: Vec<u64> = Vec::new();
    while Instant::now() < deadline {
        let body = scrape(scraper, "while pairing a reading with a push");
        let seq = gauge(&body, "goscope_agent_reading_sequence").expect("a reading sequence");
        scraped.insert(seq as u64, body);
        while let Some(record) = receiver.next(PAIR_POLL) {
            let seq =
                request_sequence(&record["request"]).expect("a push without a reading sequence");
            if let Some(body) = scraped.remove(&seq) {
                return (body, record);
            }
            pushed.push(seq);
        }
    }
    panic!(
        "no push carried a scraped reading within {WITHIN:?}: scraped {:?}, pushed {pushed:?}",
        scraped.keys().collect::<Vec<_>>()
    );
}

#[test]
fn otlp_push_carries_the_same_reading_as_metrics() {
    if !require_root_or_skip("otlp_push_carries_the_same_reading_as_metrics") {
        return;
    }
    let receiver = Receiver::start(&[]);
    let binary = loadgen("1.22", &cgo());
    // Allocating and collecting all the time: a reading that differed
    // from another would show.
    let target = Target::start(&binary, &["-work", "alloc", "-background"], &[]).unwrap();
    let agent_started = SystemTime::now();
    let endpoint = format!("http://127.0.0.1:{}/v1/metrics", receiver.port);
    let (mut agent, port) = start_agent_with(
        "200",
        &[
            "--otlp-endpoint",
            &endpoint,
            "--otlp-interval-ms",
            INTERVAL_MS,
            "--otlp-compression",
            "gzip",
        ],
    );
    agent
        .wait_for_stderr(|l| l.contains(&format!("watching pid {} ", target.pid)))
        .unwrap();
    let scraper = Scraper::new(port);
    let (body, record) = paired_reading(&scraper, &receiver);
    let received = SystemTime::now();
    // Sent gzipped (the receiver undid it): the reading below is what the
    // compressed body held.
    assert_eq!(
        record["headers"]["content-encoding"], "gzip",
        "{}",
        record["headers"]
    );
    let (sent, decoded) = (
        record["body_bytes"].as_u64().unwrap(),
        record["decoded_bytes"].as_u64().unwrap(),
    );
    assert!(
        sent * 2 < decoded,
        "a gzipped push of {sent} bytes for {decoded}"
    );
    let request = record["request"].clone();

    let prometheus = prometheus_reading(&body);
    let (otlp, stamps) = otlp_reading(&request);
    // Every series has a point of the same type and value, and no point
    // lacks a series.
    let mut compared = 0;
    for (key, (kind, point)) in &prometheus.points {
        let Some((otlp_kind, otlp_point)) = otlp.points.get(key) else {
            panic!("{key:?} is on /metrics but not in the push");
        };
        assert_eq!(kind, otlp_kind, "{key:?}");
        assert!(
            point.agrees(otlp_point),
            "{key:?}: /metrics says {point:?}, the push {otlp_point:?}"
        );
        compared += 1;
    }
    for key in otlp.points.keys() {
        assert!(
            prometheus.points.contains_key(key),
            "{key:?} is pushed but not on /metrics"
        );
    }
    assert!(compared > 100, "only {compared} series compared");
    let pid = target.pid;
    let info = (
        "goscope_target_info".to_string(),
        Some(pid),
        BTreeMap::new(),
    );
    assert_eq!(
        otlp.points.get(&info).map(|p| &p.1),
        Some(&Point::Number(1.0))
    );
    let histograms = otlp
        .points
        .iter()
        .filter(|((_, p, _), (kind, _))| *p == Some(pid) && kind == "histogram")
        .count();
    assert!(histograms >= 2, "the target has {histograms} histograms");
    eprintln!(
        "otlp: reading {}: {compared} series agree ({histograms} histograms of pid {pid})",
        request_sequence(&request).unwrap_or_default()
    );

    // Each process's labels agree with its resource attributes.
    for (pid, labels) in &prometheus.processes {
        let attrs = otlp
            .processes
            .get(pid)
            .unwrap_or_else(|| panic!("pid {pid} has no resource"));
        for (label, attribute) in [
            ("exe", "process.executable.path"),
            ("go_version", "process.runtime.version"),
            ("container_id", "container.id"),
            ("pod_uid", "k8s.pod.uid"),
            ("pod", "k8s.pod.name"),
            ("namespace", "k8s.namespace.name"),
        ] {
            assert_eq!(
                labels.get(label),
                attrs.get(attribute),
                "pid {pid}: {attribute}"
            );
        }
    }
    // The real target's resource: its pid, executable and Go version (as
    // the target's runtime says them), service.name and host.name.
    let attrs = &otlp.processes[&pid];
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert_eq!(exe, std::fs::canonicalize(&binary).unwrap());
    let want = [
        ("process.pid", pid.to_string()),
        ("process.executable.path", exe.display().to_string()),
        ("process.executable.name", "loadgen".to_string()),
        ("process.runtime.name", "go".to_string()),
        ("process.runtime.version", target.go_version.clone()),
        ("service.name", "loadgen".to_string()),
        (
            "host.name",
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .unwrap()
                .trim()
                .to_string(),
        ),
    ];
    for (key, value) in want {
        assert_eq!(
            attrs.get(key),
            Some(&value),
            "{key} of pid {pid}: {attrs:?}"
        );
    }
    assert!(
        target.go_version.starts_with("go1.22"),
        "{}",
        target.go_version
    );

    // Cumulative points start when the agent began watching the process
    // and are stamped with the time the process was read: one start and
    // one time for all of a process's points.
    let points = &stamps[&Some(pid)];
    let (start, time) = points[0];
    assert!(
        points.iter().all(|p| *p == (start, time)),
        "pid {pid}'s points differ in their timestamps: {points:?}"
    );
    assert!(
        unix_nanos(agent_started) <= start && start < time && time <= unix_nanos(received),
        "start {start} and time {time} are not within the agent's run ({} to {})",
        unix_nanos(agent_started),
        unix_nanos(received)
    );
    let (agent_start, _) = stamps[&None][0];
    assert!(unix_nanos(agent_started) <= agent_start && agent_start <= start);

    drop(target);
    let finished = agent.interrupt().unwrap();
    assert!(finished.status.success(), "{}", finished.stderr);
}

/// A value of `goscope_otlp_requests_total{outcome}` in an exposition.
fn requests(body: &str, outcome: &str) -> f64 {
    let prefix = format!("goscope_otlp_requests_total{{outcome=\"{outcome}\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&prefix)?.parse().ok())
        .unwrap_or_else(|| panic!("no {prefix}in:\n{body}"))
}

/// Scrapes (each within `RESPONSIVE`) until `done` holds of the body.
fn scrape_until(scraper: &Scraper, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + WITHIN;
    loop {
        let body = scrape(scraper, what);
        let pending = gauge(&body, "goscope_otlp_pending_requests").expect("pending requests");
        assert!(pending <= 8.0, "{pending} requests pending");
        if done(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "never {what}:\n{body}");
        std::thread::sleep(PAIR_POLL);
    }
}

#[test]
fn otlp_push_survives_an_endpoint_that_hangs_then_refuses_then_comes_up() {
    if !require_root_or_skip("otlp_push_survives_an_endpoint_that_hangs_then_refuses_then_comes_up")
    {
        return;
    }
    // Accepts connections and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint_port = silent.local_addr().unwrap().port();
    let endpoint = format!("http://127.0.0.1:{endpoint_port}/v1/metrics");
    let header = format!("goscope-test-{}", std::process::id());
    let (mut agent, port) = start_agent_with(
        "200",
        &[
            "--otlp-endpoint",
            &endpoint,
            "--otlp-interval-ms",
            INTERVAL_MS,
            "--otlp-timeout-ms",
            PUSH_TIMEOUT_MS,
            "--otlp-header",
            &format!("X-Goscope-Test={header}"),
        ],
    );
    let scraper = Scraper::new(port);
    // Hanging: while the first attempt waits out its time-out, newer
    // requests fill the queue and the oldest are dropped (at most 8 wait:
    // `scrape_until` checks); scrapes meanwhile answer well within the
    // push's time-out.
    let body = scrape_until(&scraper, "dropped requests for a hanging endpoint", |b| {
        requests(b, "dropped") >= 2.0
    });
    assert_eq!(requests(&body, "ok"), 0.0);
    // The first attempt ends at its time-out (the agent says so), and
    // scrapes still answer.
    agent
        .wait_for_stderr(|l| l.contains(&format!("no answer within {PUSH_TIMEOUT_MS} ms")))
        .unwrap();
    scrape(&scraper, "after a push timed out");
    drop(silent);
    // Refusing connections: retried again.
    let before = requests(&body, "retried");
    scrape_until(&scraper, "retried a refusing endpoint", |b| {
        requests(b, "retried") >= before + 2.0
    });
    // Up: the data arrives, with the header.
    let receiver = Receiver::start(&["--port", &endpoint_port.to_string()]);
    let record = receiver
        .next(WITHIN)
        .expect("no push arrived once the endpoint was up");
    assert_eq!(record["path"], "/v1/metrics");
    assert_eq!(record["headers"]["content-type"], "application/x-protobuf");
    assert_eq!(record["headers"]["x-goscope-test"], header.as_str());
    // Not compressed unless asked.
    assert!(record["headers"]["content-encoding"].is_null(), "{record}");
    assert_eq!(record["body_bytes"], record["decoded_bytes"]);
    assert!(request_sequence(&record["request"]).is_some(), "{record}");
    let body = scrape_until(&scraper, "counted a delivered push", |b| {
        requests(b, "ok") >= 1.0
    });
    assert_eq!(requests(&body, "failed"), 0.0);
    assert!(
        body.contains("# TYPE goscope_otlp_requests_total counter"),
        "{body}"
    );
    let finished = agent.interrupt().unwrap();
    assert!(finished.status.success(), "{}", finished.stderr);
    for said in ["Connection refused", "delivered again"] {
        assert!(
            finished.stderr.contains(said),
            "{said:?}: {}",
            finished.stderr
        );
    }
}

#[test]
fn otlp_push_does_not_retry_a_refusal() {
    if !require_root_or_skip("otlp_push_does_not_retry_a_refusal") {
        return;
    }
    let receiver = Receiver::start(&["--status", "400"]);
    let endpoint = format!("http://127.0.0.1:{}/v1/metrics", receiver.port);
    let (agent, port) = start_agent_with(
        "200",
        &[
            "--otlp-endpoint",
            &endpoint,
            "--otlp-interval-ms",
            INTERVAL_MS,
        ],
    );
    let scraper = Scraper::new(port);
    let body = scrape_until(&scraper, "counted two refusals", |b| {
        requests(b, "failed") >= 2.0
    });
    assert_eq!(requests(&body, "retried"), 0.0);
    assert_eq!(requests(&body, "ok"), 0.0);
    assert!(receiver.next(Duration::ZERO).is_some());
    let finished = agent.interrupt().unwrap();
    assert!(finished.status.success(), "{}", finished.stderr);
    assert!(finished.stderr.contains("HTTP 400"), "{}", finished.stderr);
}

/// A CA and a server certificate for 127.0.0.1 signed by it, made by the
/// openssl command in `dir`: (ca.pem, server.pem, server.key).
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("running openssl (scripts/setup.sh installs it)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=goscope test CA",
        ],
    ]
    .concat());
    run(&[
        &["req"][..],
        &ec,
        &[
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    ]
    .concat());
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    )
}

#[test]
fn otlp_push_over_https_trusts_the_ca_file_only_when_given() {
    if !require_root_or_skip("otlp_push_over_https_trusts_the_ca_file_only_when_given") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("goscope-otlp-tls-{}", std::process::id()));
    let (ca, cert, key) = certificates(&dir);
    let receiver = Receiver::start(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let endpoint = format!("https://127.0.0.1:{}/v1/metrics", receiver.port);

    // Without the CA: the certificate is refused, the push retried.
    let (agent, port) = start_agent_with(
        "200",
        &[
            "--otlp-endpoint",
            &endpoint,
            "--otlp-interval-ms",
            INTERVAL_MS,
        ],
    );
    let scraper = Scraper::new(port);
    let body = scrape_until(&scraper, "retried an untrusted endpoint", |b| {
        requests(b, "retried") >= 1.0
    });
    assert_eq!(requests(&body, "ok"), 0.0);
    let finished = agent.interrupt().unwrap();
    assert!(finished.status.success(), "{}", finished.stderr);
    assert!(
        finished.stderr.contains("TLS with 127.0.0.1"),
        "{}",
        finished.stderr
    );
    assert!(
        receiver.next(Duration::ZERO).is_none(),
        "a push got through"
    );

    // With it: delivered.
    let (agent, port) = start_agent_with(
        "200",
        &[
            "--otlp-endpoint",
            &endpoint,
            "--otlp-interval-ms",
            INTERVAL_MS,
            "--otlp-ca-file",
            ca.to_str().unwrap(),
        ],
    );
    let record = receiver.next(WITHIN).expect("no push arrived over https");
    assert!(request_sequence(&record["request"]).is_some(), "{record}");
    let scraper = Scraper::new(port);
    scrape_until(&scraper, "counted a push over https", |b| {
        requests(b, "ok") >= 1.0
    });
    let finished = agent.interrupt().unwrap();
    assert!(finished.status.success(), "{}", finished.stderr);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_otlp_flags_are_errors_naming_the_value() {
    for (args, names) in [
        (
            vec!["--otlp-endpoint", "ftp://collector:4318/v1/metrics"],
            "ftp://collector:4318/v1/metrics",
        ),
        (vec!["--otlp-endpoint", "collector:4318"], "collector:4318"),
        (
            vec![
                "--otlp-endpoint",
                "http://127.0.0.1:4318",
                "--otlp-header",
                "NoEquals",
            ],
            "NoEquals",
        ),
        (
            vec![
                "--otlp-endpoint",
                "http://127.0.0.1:4318",
                "--otlp-interval-ms",
                "5",
            ],
            "5",
        ),
        (
            vec![
                "--otlp-endpoint",
                "http://127.0.0.1:4318",
                "--otlp-compression",
                "zstd",
            ],
            "zstd",
        ),
        (vec!["--otlp-header", "A=b"], "--otlp-endpoint"),
        (vec!["--otlp-compression", "gzip"], "--otlp-endpoint"),
    ] {
        let mut all = vec!["agent"];
        all.extend(&args);
        let finished = testkit::goscope::run(&all).unwrap();
        assert_eq!(
            finished.status.code(),
            Some(2),
            "{args:?}: {}",
            finished.stderr
        );
        assert!(
            finished.stderr.contains(names),
            "{args:?}: the error does not name {names:?}: {}",
            finished.stderr
        );
        assert_eq!(
            finished
                .stderr
                .trim()
                .lines()
                .filter(|l| l.starts_with("error"))
                .count(),
            1,
            "{args:?}: {}",
            finished.stderr
        );
    }
    // A CA file that is not one: an error naming it, before anything runs.
    if require_root_or_skip("bad_otlp_flags_are_errors_naming_the_value (CA file)") {
        let path =
            std::env::temp_dir().join(format!("goscope-not-a-ca-{}.pem", std::process::id()));
        std::fs::write(&path, "hello\n").unwrap();
        let finished = testkit::goscope::run(&[
            "agent",
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
            "--otlp-endpoint",
            "https://127.0.0.1:4318",
            "--otlp-ca-file",
            path.to_str().unwrap(),
        ])
        .unwrap();
        assert_eq!(finished.status.code(), Some(1), "{}", finished.stderr);
        assert!(
            finished.stderr.contains(path.to_str().unwrap()),
            "{}",
            finished.stderr
        );
        std::fs::remove_file(&path).unwrap();
    }
}
