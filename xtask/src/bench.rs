//! The overhead benchmark: what attaching goscope costs a Go target, and
//! how much of that is noise. A fixed loadgen batch is run in fresh target
//! processes without and with goscope attached (A/B pairs) and, in the same
//! run, without and without (A/A pairs, the noise floor), interleaved and
//! in alternating order. Per batch it measures the target's CPU time (the
//! kernel's per-thread runtime, schedstat's first field, summed over all
//! threads in ns), its wall time (the target times its own batch) and
//! goscope's own CPU apart, with the target and goscope pinned to
//! different CPUs. It prints per-pair ratios, their medians with a
//! distribution-free interval, goscope's own overhead estimate next to the
//! measured one, a verdict, and one `bench-json` line per workload.

use std::{
    ffi::{c_int, c_long},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use clap::{ArgAction, Args};
use testkit::{BuildOptions, Goscope, Target};

/// The acceptance workloads `--all` runs: allocation-heavy,
/// goroutine-heavy, cgo-heavy and a service-like mix.
const ALL_WORKLOADS: [&str; 4] = ["alloc", "goroutines", "cgo", "service"];

/// Batch size multiplier per workload when `--scale` is not given, so that
/// a batch on one CPU takes roughly 0.3 to 0.8 s here.
fn default_scale(work: &str) -> u32 {
    match work {
        "alloc" => 15,
        "goroutines" => 25,
        "cgo" => 500,
        "service" => 3,
        "gc" => 4,
        "sites" => 20,
        _ => 3,
    }
}

/// The coverage the interval on the median ratio aims for.
const COVERAGE_GOAL: f64 = 0.95;
/// The estimate must be within this many points of the measured overhead.
const ESTIMATE_TOLERANCE_POINTS: f64 = 1.0;
/// A batch whose process CPU clock exceeds the sum over its live threads'
/// schedstat by more than this lost CPU to threads that exited.
const EXITED_THREADS_NOTE_NS: u64 = 1_000_000;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Go version of the target (installed by scripts/setup.sh).
    #[arg(long, default_value = "1.27")]
    go: String,
    /// loadgen workload: gc, alloc, sites, goroutines, cgo, cgo-slow,
    /// mixed, service.
    #[arg(long, default_value = "mixed")]
    work: String,
    /// Run the four acceptance workloads (alloc, goroutines, cgo, service)
    /// one after the other, one table each; `--work` is then ignored.
    #[arg(long)]
    all: bool,
    /// Batch size multiplier (default: per workload, about 0.3-0.8 s a
    /// batch on one CPU; with --all, applies to every workload).
    #[arg(long)]
    scale: Option<u32>,
    /// Pairs of runs (without, with); as many A/A pairs with --aa.
    #[arg(long, default_value_t = 9)]
    pairs: u32,
    /// Also run without/without (A/A) pairs, interleaved with the A/B
    /// pairs, to measure the noise in the same run (`--aa false`: off).
    #[arg(long, default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    aa: bool,
    /// CPUs for "target,goscope" (one each; the target's GOMAXPROCS
    /// follows its CPU set); "none" leaves both unpinned.
    #[arg(long, default_value = "1,0")]
    cpus: String,
    /// goscope subcommand attached during the "with" runs ("agent": the
    /// host agent, scraped every second; "goroutines": `goroutines
    /// --watch`, a dump every --watch-interval-ms given in --goscope-args;
    /// "trace": the timeline, to a scratch file).
    #[arg(long, default_value = "doctor")]
    mode: String,
    /// Pause between start (and attach) and the batch, in both arms, so
    /// that attach-time work (DWARF parsing, eBPF load) is not measured.
    #[arg(long, default_value_t = 1000)]
    settle_ms: u64,
    /// Batches per run; the run's figures are their medians (damps VM
    /// noise).
    #[arg(long, default_value_t = 3)]
    batches: u32,
    /// Extra arguments for the goscope command, e.g. "--no-sites" or
    /// "--overhead-budget off" (to measure what the probes cost left on).
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    goscope_args: String,
    /// Fail when the upper end of the interval on the median with/without
    /// ratio (target CPU or wall) exceeds this.
    #[arg(long, default_value_t = 1.03)]
    max_ratio: f64,
}

/// Where the target and goscope run.
#[derive(Clone, Copy, Debug)]
struct Cpus {
    target: Option<usize>,
    goscope: Option<usize>,
}

impl Cpus {
    fn parse(text: &str) -> anyhow::Result<Self> {
        if text == "none" {
            return Ok(Self {
                target: None,
                goscope: None,
            });
        }
        let parsed: Vec<usize> = text
            .split(',')
            .map(|c| c.trim().parse::<usize>())
            .collect::<Result<_, _>>()
            .with_context(|| format!("--cpus {text:?}: want \"TARGET,GOSCOPE\" or \"none\""))?;
        let [target, goscope] = parsed[..] else {
            bail!("--cpus {text:?}: want two CPUs, \"TARGET,GOSCOPE\"");
        };
        anyhow::ensure!(
            target != goscope,
            "--cpus {text:?}: the target and goscope need different CPUs"
        );
        Ok(Self {
            target: Some(target),
            goscope: Some(goscope),
        })
    }

    fn describe(self) -> String {
        match (self.target, self.goscope) {
            (Some(t), Some(g)) => format!("target on CPU {t}, goscope on CPU {g}"),
            _ => "unpinned".to_string(),
        }
    }
}

fn pinned(cpu: Option<usize>) -> Vec<usize> {
    cpu.into_iter().collect()
}

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.pairs > 0, "--pairs must be at least 1");
    let cpus = Cpus::parse(&args.cpus)?;
    let binary = testkit::build_workload(
        &args.go,
        "loadgen",
        &BuildOptions {
            cgo: true,
            ..Default::default()
        },
    )?;
    let works: Vec<&str> = if args.all {
        ALL_WORKLOADS.to_vec()
    } else {
        vec![args.work.as_str()]
    };
    let mut tables = Vec::new();
    for work in works {
        let bench = Bench {
            args,
            cpus,
            binary: &binary,
            work,
            scale: args.scale.unwrap_or_else(|| default_scale(work)),
        };
        let table = bench.run()?;
        table.print();
        tables.push(table);
    }
    if tables.len() > 1 {
        println!("\n===== summary: {} workloads =====", tables.len());
        for table in &tables {
            table.print();
        }
    }
    let failed: Vec<String> = tables
        .iter()
        .filter(|t| !t.passed)
        .map(|t| format!("{}: {}", t.work, t.verdict))
        .collect();
    if !failed.is_empty() {
        bail!("bench did not pass: {}", failed.join(" | "));
    }
    Ok(())
}

/// One workload's benchmark.
struct Bench<'a> {
    args: &'a BenchArgs,
    cpus: Cpus,
    binary: &'a std::path::Path,
    work: &'a str,
    scale: u32,
}

/// What one run (a fresh target, with or without goscope) measured: each
/// figure is the median over the run's batches.
#[derive(Clone, Debug)]
struct RunFigures {
    wall_ns: f64,
    cpu_ns: f64,
    /// The target's CPU over goscope's whole window: from just before
    /// goscope starts until it has exited (attach, settle, batches,
    /// detach); without goscope, from the same point to the last batch's
    /// end. What goscope's own estimate covers.
    window_cpu_ns: f64,
    goscope_cpu_ns: Option<f64>,
    /// Busy time of the target's CPU not spent by the target (other
    /// processes, interrupts), and hypervisor steal on it, in percent of
    /// the batch: how contended the CPU was.
    others_percent: Option<f64>,
    steal_percent: Option<f64>,
    /// `overhead.estimated_percent` from goscope's JSON, when it has one.
    estimated_percent: Option<f64>,
    /// `overhead.by_source` in ms (keys without their `_ns`).
    estimated_by_source_ms: Vec<(String, f64)>,
    gomaxprocs: Option<f64>,
    /// Batches whose CPU partly came from threads that exited during them.
    exited_thread_batches: u32,
}

/// One pair of runs in slot order; `ratio` is "second arm" over "first
/// arm" where for A/B the second arm is the one with goscope.
struct Pair {
    base: RunFigures,
    other: RunFigures,
}

impl Pair {
    fn cpu_ratio(&self) -> f64 {
        self.other.cpu_ns / self.base.cpu_ns
    }
    fn wall_ratio(&self) -> f64 {
        self.other.wall_ns / self.base.wall_ns
    }
    fn window_ratio(&self) -> f64 {
        self.other.window_cpu_ns / self.base.window_cpu_ns
    }
}

impl Bench<'_> {
    fn run(&self) -> anyhow::Result<Table> {
        let args = self.args;
        let started = Instant::now();
        println!(
            "\nbench: go {} workload {} x{} mode {}{}{}, {} A/B pairs{}, {} batches per run, {}",
            args.go,
            self.work,
            self.scale,
            args.mode,
            if args.goscope_args.is_empty() {
                ""
            } else {
                " "
            },
            args.goscope_args,
            args.pairs,
            if args.aa { " + as many A/A pairs" } else { "" },
            args.batches.max(1),
            self.cpus.describe(),
        );
        let mut ab = Vec::new();
        let mut aa = Vec::new();
        for index in 0..args.pairs {
            // Alternate which arm runs first, and (with A/A) whether the
            // A/B or the A/A pair comes first, so drift cancels out; the
            // A/A pair uses the same slot order as its A/B twin.
            let with_second = index % 2 == 0;
            let ab_first = index % 4 < 2;
            let mut blocks = vec![true];
            if args.aa {
                if ab_first {
                    blocks.push(false);
                } else {
                    blocks.insert(0, false);
                }
            }
            for is_ab in blocks {
                let pair = self.pair(is_ab, with_second)?;
                print_pair(index + 1, is_ab, &pair);
                if is_ab {
                    ab.push(pair);
                } else {
                    aa.push(pair);
                }
            }
        }
        Ok(Table::new(self, &ab, &aa, started.elapsed()))
    }

    /// Two runs; `with_second` says which slot the attached (A/B) or the
    /// ratio's numerator (A/A) run takes.
    fn pair(&self, is_ab: bool, with_second: bool) -> anyhow::Result<Pair> {
        let mut slots = [None, None];
        let order = if with_second { [0, 1] } else { [1, 0] };
        for slot in order {
            let attached = is_ab && slot == 1;
            slots[slot] = Some(self.run_once(attached)?);
        }
        let [Some(base), Some(other)] = slots else {
            unreachable!("both slots ran");
        };
        Ok(Pair { base, other })
    }

    fn run_once(&self, attached: bool) -> anyhow::Result<RunFigures> {
        let args = self.args;
        let scale = self.scale.to_string();
        let loadgen_args = ["-work", self.work, "-scale", scale.as_str()];
        let mut command = Command::new(self.binary);
        command.args(loadgen_args);
        if let Some(cpu) = self.cpus.target {
            testkit::target::pin_to_cpus(&mut command, &[cpu])?;
        }
        let mut target = Target::start_command(&mut command)?;
        let pid = target.pid.to_string();
        let window_start = process_cpu_ns(target.pid)?;
        let goscope_cpus = pinned(self.cpus.goscope);
        let goscope = if attached && args.mode == "agent" {
            Some(start_agent(target.pid, &goscope_cpus)?)
        } else if attached {
            // goroutines: dumps for the leak watch, every
            // --watch-interval-ms (pass e.g. 50) or slower.
            let window = if args.mode == "goroutines" {
                "--watch"
            } else {
                "--duration"
            };
            // trace: the timeline into a scratch file (it has no --json).
            let trace_file = std::env::temp_dir()
                .join(format!(
                    "goscope-bench-trace-{}.json.gz",
                    std::process::id()
                ))
                .display()
                .to_string();
            let output: &[&str] = if args.mode == "trace" {
                &["-o", &trace_file]
            } else {
                &["--json"]
            };
            let mut command = vec![args.mode.as_str(), "--pid", &pid, window, "3600"];
            command.extend(output);
            command.extend(args.goscope_args.split_whitespace());
            let mut g = Goscope::start_pinned(&command, &goscope_cpus)?;
            g.wait_attached()?;
            Some(g)
        } else {
            None
        };
        std::thread::sleep(Duration::from_millis(args.settle_ms));
        let mut wall = Vec::new();
        let mut cpu = Vec::new();
        let mut goscope_cpu = Vec::new();
        let mut gomaxprocs = None;
        let mut exited_thread_batches = 0;
        let mut others = Vec::new();
        let mut steal = Vec::new();
        for _ in 0..args.batches.max(1) {
            let cpu_before = self.cpus.target.map(cpu_times).transpose()?;
            let started = Instant::now();
            let before = CpuReading::take(target.pid)?;
            let goscope_before = goscope
                .as_ref()
                .map(|g| process_cpu_ns(g.pid()))
                .transpose()?;
            let result = target.run_batch()?;
            let after = CpuReading::take(target.pid)?;
            let span_ns = started.elapsed().as_nanos() as f64;
            if let (Some(cpu), Some(b)) = (self.cpus.target, cpu_before) {
                let a = cpu_times(cpu)?;
                let target_ns = after.process_ns.saturating_sub(before.process_ns) as f64;
                let busy_ns = a.busy_ns.saturating_sub(b.busy_ns) as f64;
                others.push(((busy_ns - target_ns).max(0.0) / span_ns * 100.0).min(100.0));
                steal.push(a.steal_ns.saturating_sub(b.steal_ns) as f64 / span_ns * 100.0);
            }
            if let (Some(g), Some(b)) = (&goscope, goscope_before) {
                goscope_cpu.push(process_cpu_ns(g.pid())?.saturating_sub(b) as f64);
            }
            let batch_cpu = after.process_ns.saturating_sub(before.process_ns);
            if batch_cpu.saturating_sub(after.tasks_since(&before)) > EXITED_THREADS_NOTE_NS {
                exited_thread_batches += 1;
            }
            wall.push(result.elapsed_ns as f64);
            cpu.push(batch_cpu as f64);
            gomaxprocs = result.end("/sched/gomaxprocs:threads").ok();
        }
        let overhead = match goscope {
            Some(g) => {
                let finished = g.interrupt()?;
                anyhow::ensure!(
                    finished.status.success(),
                    "goscope failed: {}",
                    finished.stderr
                );
                goscope_overhead(&finished.stdout)
            }
            None => None,
        };
        let estimated_percent = overhead
            .as_ref()
            .and_then(|o| o.get("estimated_percent")?.as_f64());
        let estimated_by_source_ms = overhead
            .as_ref()
            .and_then(|o| o.get("by_source")?.as_object().cloned())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(k, v)| {
                let name = k.strip_suffix("_ns")?.to_string();
                Some((name, v.as_f64()? / 1e6))
            })
            .collect();
        let window_cpu_ns = process_cpu_ns(target.pid)?.saturating_sub(window_start) as f64;
        target.quit().context("stopping the target")?;
        let median_of = |v: &[f64]| (!v.is_empty()).then(|| median(v));
        Ok(RunFigures {
            wall_ns: median(&wall),
            cpu_ns: median(&cpu),
            window_cpu_ns,
            others_percent: median_of(&others),
            steal_percent: median_of(&steal),
            goscope_cpu_ns: (!goscope_cpu.is_empty()).then(|| median(&goscope_cpu)),
            estimated_percent,
            estimated_by_source_ms,
            gomaxprocs,
            exited_thread_batches,
        })
    }
}

fn print_pair(number: u32, is_ab: bool, pair: &Pair) {
    let (label, base, other) = if is_ab {
        ("A/B", "without", "with")
    } else {
        ("A/A", "base", "twin")
    };
    let mut line = format!(
        "pair {number} {label}: cpu {base} {:.1} ms {other} {:.1} ms ratio {:.4} | wall {base} {:.1} ms {other} {:.1} ms ratio {:.4} | window cpu ratio {:.4}",
        pair.base.cpu_ns / 1e6,
        pair.other.cpu_ns / 1e6,
        pair.cpu_ratio(),
        pair.base.wall_ns / 1e6,
        pair.other.wall_ns / 1e6,
        pair.wall_ratio(),
        pair.window_ratio(),
    );
    let others: Vec<f64> = [pair.base.others_percent, pair.other.others_percent]
        .into_iter()
        .flatten()
        .collect();
    if !others.is_empty() {
        line.push_str(&format!(
            " | others on its CPU {}%",
            others
                .iter()
                .map(|o| format!("{o:.0}"))
                .collect::<Vec<_>>()
                .join("/")
        ));
    }
    if let Some(g) = pair.other.goscope_cpu_ns {
        line.push_str(&format!(" | goscope {:.1} ms/batch", g / 1e6));
    }
    if is_ab {
        line.push_str(&format!(
            " est {}",
            fmt_percent(pair.other.estimated_percent)
        ));
    }
    let exited = pair.base.exited_thread_batches + pair.other.exited_thread_batches;
    if exited > 0 {
        line.push_str(&format!(" ({exited} batches with CPU of exited threads)"));
    }
    println!("{line}");
}

fn fmt_percent(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_string(), |v| format!("{v:.2}%"))
}

/// A median ratio and a distribution-free interval around it.
#[derive(Clone, Debug)]
struct Summary {
    ratios: Vec<f64>,
    median: f64,
    low: f64,
    high: f64,
    /// The interval's coverage of the true median (exact, for continuous
    /// i.i.d. ratios); below COVERAGE_GOAL when there are too few pairs.
    coverage: f64,
}

impl Summary {
    /// The interval [x_(k), x_(n+1-k)] of the sorted ratios covers the
    /// population median with probability 1 - 2 P(Bin(n, 1/2) < k): the
    /// largest k whose coverage reaches COVERAGE_GOAL, else k = 1
    /// (min..max) with its smaller coverage.
    fn new(values: &[f64]) -> Self {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let coverage_of = |k: usize| 1.0 - 2.0 * binomial_half_cdf(n, k - 1);
        let k = (1..=n.div_ceil(2))
            .rev()
            .find(|&k| coverage_of(k) >= COVERAGE_GOAL)
            .unwrap_or(1);
        Self {
            median: median(&sorted),
            low: sorted[k - 1],
            high: sorted[n - k],
            coverage: coverage_of(k).max(0.0),
            ratios: values.to_vec(),
        }
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "median": round4(self.median),
            "low": round4(self.low),
            "high": round4(self.high),
            "coverage": round4(self.coverage),
            "ratios": self.ratios.iter().map(|&r| round4(r)).collect::<Vec<_>>(),
        })
    }

    fn row(&self, label: &str) -> String {
        format!(
            "  {label:<22} {:>8.4} {:>+7.2}%   [{:.4}, {:.4}]  {:>5.1}%   {}",
            self.median,
            (self.median - 1.0) * 100.0,
            self.low,
            self.high,
            self.coverage * 100.0,
            self.ratios
                .iter()
                .map(|r| format!("{r:.3}"))
                .collect::<Vec<_>>()
                .join(" "),
        )
    }
}

/// The fewest pairs whose min..max interval reaches `goal`.
fn pairs_for_coverage(goal: f64) -> usize {
    (1..64)
        .find(|&n| 1.0 - 2.0 * binomial_half_cdf(n, 0) >= goal)
        .unwrap_or(64)
}

/// P(X <= k) for X ~ Bin(n, 1/2).
fn binomial_half_cdf(n: usize, k: usize) -> f64 {
    let mut term = 1.0_f64; // C(n, 0)
    let mut sum = 0.0;
    for i in 0..=k.min(n) {
        if i > 0 {
            term = term * (n + 1 - i) as f64 / i as f64;
        }
        sum += term;
    }
    sum / 2.0_f64.powi(i32::try_from(n).unwrap_or(i32::MAX))
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

fn round4(v: f64) -> f64 {
    (v * 1e4).round() / 1e4
}

/// One workload's results: the table the closing notes quote.
struct Table {
    work: String,
    heading: String,
    cpu: Summary,
    wall: Summary,
    cpu_aa: Option<Summary>,
    wall_aa: Option<Summary>,
    window: Summary,
    window_aa: Option<Summary>,
    /// Median busy share of the target's CPU taken by others, and steal.
    others_percent: Option<f64>,
    steal_percent: Option<f64>,
    target_cpu_without_ms: f64,
    target_cpu_with_ms: f64,
    goscope_cpu_ms: Option<f64>,
    estimated_percent: Option<f64>,
    estimated_by_source_ms: Vec<(String, f64)>,
    exited_thread_batches: u32,
    verdict: String,
    passed: bool,
    json: serde_json::Value,
}

impl Table {
    fn new(bench: &Bench<'_>, ab: &[Pair], aa: &[Pair], took: Duration) -> Self {
        let args = bench.args;
        let summarize = |pairs: &[Pair], f: fn(&Pair) -> f64| {
            (!pairs.is_empty()).then(|| Summary::new(&pairs.iter().map(f).collect::<Vec<_>>()))
        };
        let cpu = summarize(ab, Pair::cpu_ratio).expect("at least one pair");
        let wall = summarize(ab, Pair::wall_ratio).expect("at least one pair");
        let cpu_aa = summarize(aa, Pair::cpu_ratio);
        let wall_aa = summarize(aa, Pair::wall_ratio);
        let window = summarize(ab, Pair::window_ratio).expect("at least one pair");
        let window_aa = summarize(aa, Pair::window_ratio);
        let runs = || ab.iter().chain(aa).flat_map(|p| [&p.base, &p.other]);
        let others: Vec<f64> = runs().filter_map(|r| r.others_percent).collect();
        let steal: Vec<f64> = runs().filter_map(|r| r.steal_percent).collect();
        let others_percent = (!others.is_empty()).then(|| median(&others));
        let steal_percent = (!steal.is_empty()).then(|| median(&steal));
        let without: Vec<f64> = ab.iter().map(|p| p.base.cpu_ns).collect();
        let with: Vec<f64> = ab.iter().map(|p| p.other.cpu_ns).collect();
        let goscope: Vec<f64> = ab.iter().filter_map(|p| p.other.goscope_cpu_ns).collect();
        let estimates: Vec<f64> = ab
            .iter()
            .filter_map(|p| p.other.estimated_percent)
            .collect();
        let gomaxprocs = ab.iter().find_map(|p| p.base.gomaxprocs);
        let exited_thread_batches = ab
            .iter()
            .chain(aa)
            .map(|p| p.base.exited_thread_batches + p.other.exited_thread_batches)
            .sum();
        let target_cpu_without_ms = median(&without) / 1e6;
        let target_cpu_with_ms = median(&with) / 1e6;
        let goscope_cpu_ms = (!goscope.is_empty()).then(|| median(&goscope) / 1e6);
        let estimated_percent = (!estimates.is_empty()).then(|| median(&estimates));
        let mut by_source = std::collections::BTreeMap::<String, Vec<f64>>::new();
        for (name, ms) in ab.iter().flat_map(|p| &p.other.estimated_by_source_ms) {
            by_source.entry(name.clone()).or_default().push(*ms);
        }
        let estimated_by_source_ms: Vec<(String, f64)> = by_source
            .into_iter()
            .map(|(name, values)| (name, median(&values)))
            .collect();
        let measured_percent = (cpu.median - 1.0) * 100.0;
        // goscope's estimate covers its whole window, attach and detach
        // included: compare it with the target's CPU over that window.
        let window_percent = (window.median - 1.0) * 100.0;

        let mut failures = Vec::new();
        for (name, s) in [("target CPU", &cpu), ("wall", &wall)] {
            if s.high > args.max_ratio {
                failures.push(format!(
                    "{name} with/without upper bound {:.4} > {:.2}",
                    s.high, args.max_ratio
                ));
            }
        }
        if let Some(est) = estimated_percent
            && (est - window_percent).abs() > ESTIMATE_TOLERANCE_POINTS
        {
            failures.push(format!(
                "goscope's estimate {est:.2}% is {:.2} points from the {window_percent:+.2}% measured over its window",
                (est - window_percent).abs()
            ));
        }

        let conclusive = cpu.coverage >= COVERAGE_GOAL;
        let verdict = if !failures.is_empty() {
            format!("FAIL: {}", failures.join("; "))
        } else if !conclusive {
            format!(
                "INCONCLUSIVE: every check fits, but {} pairs give only a {:.1}% interval ({} or more give {:.0}%)",
                ab.len(),
                cpu.coverage * 100.0,
                pairs_for_coverage(COVERAGE_GOAL),
                COVERAGE_GOAL * 100.0
            )
        } else {
            "PASS".to_string()
        };
        let heading = format!(
            "{} x{}: go {}, {}{}{}, {} A/B + {} A/A pairs, {} batches per run, {} (target GOMAXPROCS {}), {:.0} s",
            bench.work,
            bench.scale,
            args.go,
            args.mode,
            if args.goscope_args.is_empty() {
                ""
            } else {
                " "
            },
            args.goscope_args,
            ab.len(),
            aa.len(),
            args.batches.max(1),
            bench.cpus.describe(),
            gomaxprocs.map_or_else(|| "?".to_string(), |g| format!("{g:.0}")),
            took.as_secs_f64(),
        );
        let json = serde_json::json!({
            "work": bench.work,
            "scale": bench.scale,
            "go": args.go,
            "mode": args.mode,
            "goscope_args": args.goscope_args,
            "pairs": ab.len(),
            "aa_pairs": aa.len(),
            "batches": args.batches.max(1),
            "cpus": args.cpus,
            "gomaxprocs": gomaxprocs,
            "interval": "order statistics on the median ratio (distribution-free)",
            "cpu": cpu.json(),
            "wall": wall.json(),
            "cpu_aa": cpu_aa.as_ref().map(Summary::json),
            "wall_aa": wall_aa.as_ref().map(Summary::json),
            "window_cpu": window.json(),
            "window_cpu_aa": window_aa.as_ref().map(Summary::json),
            "others_on_target_cpu_percent": others_percent.map(round4),
            "steal_on_target_cpu_percent": steal_percent.map(round4),
            "target_cpu_ms": { "without": round4(target_cpu_without_ms), "with": round4(target_cpu_with_ms) },
            "goscope_cpu_ms_per_batch": goscope_cpu_ms.map(round4),
            "measured_overhead_percent": round4(measured_percent),
            "measured_window_overhead_percent": round4(window_percent),
            "estimated_percent": estimated_percent.map(round4),
            "estimated_by_source_ms": estimated_by_source_ms
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::json!(round4(*v))))
                .collect::<serde_json::Map<_, _>>(),
            "exited_thread_batches": exited_thread_batches,
            "max_ratio": args.max_ratio,
            "pass": failures.is_empty() && conclusive,
            "verdict": verdict,
            "failures": failures,
        });
        Self {
            work: bench.work.to_string(),
            heading,
            cpu,
            wall,
            cpu_aa,
            wall_aa,
            window,
            window_aa,
            others_percent,
            steal_percent,
            target_cpu_without_ms,
            target_cpu_with_ms,
            goscope_cpu_ms,
            estimated_percent,
            estimated_by_source_ms,
            exited_thread_batches,
            passed: failures.is_empty() && conclusive,
            verdict,
            json,
        }
    }

    fn print(&self) {
        println!("\n== bench {}", self.heading);
        println!(
            "  {:<22} {:>8} {:>8}   {:<18} {:>6}   per pair",
            "ratio", "median", "", "interval", "cover"
        );
        println!("{}", self.cpu.row("target CPU with/without"));
        if let Some(s) = &self.cpu_aa {
            println!("{}", s.row("target CPU A/A"));
        }
        println!("{}", self.wall.row("wall with/without"));
        if let Some(s) = &self.wall_aa {
            println!("{}", s.row("wall A/A"));
        }
        println!("{}", self.window.row("window CPU with/without"));
        if let Some(s) = &self.window_aa {
            println!("{}", s.row("window CPU A/A"));
        }
        println!(
            "  target CPU per batch   without {:.1} ms, with {:.1} ms (medians over runs)",
            self.target_cpu_without_ms, self.target_cpu_with_ms
        );
        match self.goscope_cpu_ms {
            Some(g) => println!(
                "  goscope CPU per batch  {g:.1} ms ({:.2}% of the target's CPU without goscope)",
                g / self.target_cpu_without_ms * 100.0
            ),
            None => println!("  goscope CPU per batch  -"),
        }
        println!(
            "  overhead               measured {:+.2}% target CPU, {:+.2}% wall per batch; {:+.2}% target CPU over goscope's window; goscope's estimate {}",
            (self.cpu.median - 1.0) * 100.0,
            (self.wall.median - 1.0) * 100.0,
            (self.window.median - 1.0) * 100.0,
            fmt_percent(self.estimated_percent),
        );
        if !self.estimated_by_source_ms.is_empty() {
            println!(
                "  estimate by source     {} (ms over goscope's window, medians over runs)",
                self.estimated_by_source_ms
                    .iter()
                    .map(|(k, v)| format!("{k} {v:.1}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        if let Some(others) = self.others_percent {
            println!(
                "  target's CPU           {others:.1}% busy with others, {} steal (medians over batches)",
                fmt_percent(self.steal_percent)
            );
        }
        if self.exited_thread_batches > 0 {
            println!(
                "  note: {} batches had CPU from threads that exited (counted through the process CPU clock)",
                self.exited_thread_batches
            );
        }
        println!("  verdict {}", self.verdict);
        println!("bench-json {}", self.json);
    }
}

/// The target's CPU time before or after a batch.
struct CpuReading {
    /// The process CPU clock: the kernel's sum of every thread's runtime
    /// (schedstat's first field), the threads that exited included.
    process_ns: u64,
    /// (tid, schedstat runtime) of the threads alive at the reading.
    tasks: Vec<(u32, u64)>,
}

impl CpuReading {
    fn take(pid: u32) -> anyhow::Result<Self> {
        Ok(Self {
            process_ns: process_cpu_ns(pid)?,
            tasks: task_schedstat(pid)?,
        })
    }

    /// Runtime the threads alive now spent since `before` (a thread new
    /// since then counts from zero); threads that exited in between are
    /// missing, which is what the process clock makes up for.
    fn tasks_since(&self, before: &Self) -> u64 {
        self.tasks
            .iter()
            .map(|&(tid, ns)| {
                let was = before
                    .tasks
                    .iter()
                    .find(|&&(t, _)| t == tid)
                    .map_or(0, |&(_, n)| n);
                ns.saturating_sub(was)
            })
            .sum()
    }
}

/// /proc/stat counts in USER_HZ ticks, which the kernel fixes at 100 for
/// user space.
const USER_HZ_NS: u64 = 10_000_000;

/// One CPU's busy and steal time so far, from /proc/stat.
#[derive(Clone, Copy, Debug)]
struct CpuTimes {
    /// user + nice + system + irq + softirq (guest time is in user).
    busy_ns: u64,
    steal_ns: u64,
}

fn cpu_times(cpu: usize) -> anyhow::Result<CpuTimes> {
    let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let name = format!("cpu{cpu}");
    let line = stat
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name.as_str()))
        .with_context(|| format!("/proc/stat has no {name} line"))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .with_context(|| format!("/proc/stat: {line:?}"))?;
    let field = |i: usize| ticks.get(i).copied().unwrap_or(0) * USER_HZ_NS;
    // user nice system idle iowait irq softirq steal guest guest_nice
    Ok(CpuTimes {
        busy_ns: field(0) + field(1) + field(2) + field(5) + field(6),
        steal_ns: field(7),
    })
}

/// schedstat's first field (ns on the CPU) of every thread of `pid`.
fn task_schedstat(pid: u32) -> anyhow::Result<Vec<(u32, u64)>> {
    let dir = format!("/proc/{pid}/task");
    let mut tasks = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("listing {dir}"))? {
        let entry = entry?;
        let Some(tid) = entry.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        // A thread may exit between the listing and the read.
        let Ok(text) = std::fs::read_to_string(entry.path().join("schedstat")) else {
            continue;
        };
        let ns = text
            .split_whitespace()
            .next()
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("{dir}/{tid}/schedstat: {text:?}"))?;
        tasks.push((tid, ns));
    }
    Ok(tasks)
}

#[repr(C)]
struct Timespec {
    tv_sec: c_long,
    tv_nsec: c_long,
}

unsafe extern "C" {
    fn clock_gettime(clock: c_int, tp: *mut Timespec) -> c_int;
}

/// The CPU time of process `pid`, all threads (the exited ones included),
/// in ns: clock_gettime on its process CPU clock (what
/// clock_getcpuclockid returns: CPUCLOCK_SCHED, the scheduler's runtime).
fn process_cpu_ns(pid: u32) -> anyhow::Result<u64> {
    const CPUCLOCK_SCHED: c_int = 2;
    let pid = c_int::try_from(pid)?;
    let clock = ((!pid) << 3) | CPUCLOCK_SCHED;
    let mut ts = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `ts`, which we own.
    if unsafe { clock_gettime(clock, &mut ts) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("reading the CPU clock of pid {pid}"));
    }
    Ok(u64::try_from(ts.tv_sec)? * 1_000_000_000 + u64::try_from(ts.tv_nsec)?)
}

/// The `overhead` object of what goscope printed with --json (one object,
/// or one per line: the last that has it).
fn goscope_overhead(stdout: &str) -> Option<serde_json::Value> {
    let pick = |mut v: serde_json::Value| Some(v.get_mut("overhead")?.take());
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(stdout) {
        return pick(v);
    }
    stdout
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(pick)
}

/// `goscope agent` on a free loopback port, scraped every second by a
/// background thread (as Prometheus would), once it watches `pid`.
fn start_agent(pid: u32, cpus: &[usize]) -> anyhow::Result<Goscope> {
    use std::io::{Read as _, Write as _};
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut agent = Goscope::start_pinned(&["agent", "--listen", &listen], cpus)?;
    agent.wait_for_stderr(|l| l.contains(&format!("watching pid {pid} ")))?;
    std::thread::spawn(move || {
        loop {
            let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
                return;
            };
            let _ = write!(stream, "GET /metrics HTTP/1.0\r\n\r\n");
            let mut body = Vec::new();
            let _ = stream.read_to_end(&mut body);
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    Ok(agent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_coverage_from_order_statistics() {
        // n = 9: k = 2 covers 1 - 2 * 10/512 = 96.1%.
        let s = Summary::new(&[9.0, 1.0, 8.0, 2.0, 7.0, 3.0, 6.0, 4.0, 5.0]);
        assert_eq!(s.median, 5.0);
        assert_eq!((s.low, s.high), (2.0, 8.0));
        assert!((s.coverage - (1.0 - 20.0 / 512.0)).abs() < 1e-12);
        // n = 3: only min..max, 75%.
        let s = Summary::new(&[1.02, 0.99, 1.05]);
        assert_eq!((s.low, s.high), (0.99, 1.05));
        assert!((s.coverage - 0.75).abs() < 1e-12);
    }

    #[test]
    fn estimate_from_json_lines() {
        let estimate = |text: &str| goscope_overhead(text)?.get("estimated_percent")?.as_f64();
        assert_eq!(
            estimate(r#"{"overhead":{"estimated_percent":0.4}}"#),
            Some(0.4)
        );
        assert_eq!(
            estimate("{\"a\":1}\n{\"overhead\":{\"estimated_percent\":2}}\n"),
            Some(2.0)
        );
        assert_eq!(estimate(r#"{"figures":{}}"#), None);
    }

    #[test]
    fn pairs_for_95_percent() {
        assert_eq!(pairs_for_coverage(0.95), 6);
    }
}
