//! `bench NAME`: boot-time benchmarking. Boots the VM in-process several
//! times with its console captured (not shown) and prints, per run, how long
//! building the VM took (memory, devices, ACPI, kernel load), the time from
//! start to the guest's first console byte, to a marker string, and to the
//! guest's exit. Numbers only: nothing here judges them.

use std::io::Write;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use crossbeam_channel::{Receiver, Sender, bounded, select};

use crate::manager::library::Library;
use crate::manager::run;
use crate::vmm::{self, Command, ExitReason};

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// VM name.
    pub name: String,
    /// How many boots to measure.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub runs: u32,
    /// Stop a run when the console shows this text (e.g. "Linux version",
    /// or a marker your init prints); without it a run lasts until the guest
    /// exits or --timeout.
    #[arg(long, value_name = "TEXT")]
    pub until: Option<String>,
    /// Upper bound for one run, in seconds.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
}

/// Times of one boot, from `vmm::build` on.
#[derive(Debug, Default, Clone)]
struct Sample {
    build: Duration,
    first_output: Option<Duration>,
    marker: Option<Duration>,
    end: Duration,
    exit: String,
}

/// Console sink that timestamps the first byte and the first appearance of
/// the marker, and keeps only what is needed to find the marker.
struct Probe {
    started: Arc<Mutex<Option<Instant>>>,
    first_output: Arc<Mutex<Option<Duration>>>,
    marker: Option<Vec<u8>>,
    tail: Vec<u8>,
    found: Option<Sender<Duration>>,
}

impl Probe {
    fn elapsed(&self) -> Option<Duration> {
        let started = *self.started.lock().unwrap_or_else(|e| e.into_inner());
        started.map(|t| t.elapsed())
    }
}

impl Write for Probe {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let now = self.elapsed();
        {
            let mut first = self.first_output.lock().unwrap_or_else(|e| e.into_inner());
            if first.is_none() {
                *first = now;
            }
        }
        if let (Some(marker), Some(_)) = (&self.marker, &self.found) {
            self.tail.extend_from_slice(buf);
            if self
                .tail
                .windows(marker.len())
                .any(|w| w == marker.as_slice())
            {
                if let (Some(sender), Some(at)) = (self.found.take(), now) {
                    let _ = sender.send(at);
                }
            } else {
                // Keep just enough to match a marker split across writes.
                let keep = marker.len().saturating_sub(1);
                let cut = self.tail.len().saturating_sub(keep);
                self.tail.drain(..cut);
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub fn run(library: &Library, args: &BenchArgs) -> anyhow::Result<ExitCode> {
    let entry = library.load(&args.name)?;
    if run::is_running(&entry.dir) {
        anyhow::bail!(
            "VM '{}' is running; stop it before benchmarking",
            entry.name
        );
    }
    let config = entry.vmm_config()?;
    println!(
        "bench {}: {} vCPU(s), {} MiB, kernel {}",
        entry.name,
        config.vcpus,
        config.memory_mib,
        config.kernel.display()
    );
    println!("host: {}", host_kind());
    println!(
        "{:>4} {:>10} {:>14} {:>10} {:>10}  exit",
        "run", "build ms", "1st output ms", "marker ms", "end ms"
    );
    let mut samples = Vec::new();
    for i in 1..=args.runs {
        let sample = run_once(config.clone(), args)
            .with_context(|| format!("run {i} of VM '{}'", entry.name))?;
        println!(
            "{:>4} {:>10} {:>14} {:>10} {:>10}  {}",
            i,
            ms(Some(sample.build)),
            ms(sample.first_output),
            ms(sample.marker),
            ms(Some(sample.end)),
            sample.exit
        );
        samples.push(sample);
    }
    summarize(&samples);
    Ok(ExitCode::SUCCESS)
}

fn run_once(config: vmm::VmConfig, args: &BenchArgs) -> anyhow::Result<Sample> {
    let started = Arc::new(Mutex::new(None));
    let first_output = Arc::new(Mutex::new(None));
    let (found_tx, found_rx): (Sender<Duration>, Receiver<Duration>) = bounded(1);
    // Without a marker, nothing will ever be found: wait on a channel that
    // never fires rather than on one whose sender is dropped.
    let found_rx = if args.until.is_some() {
        found_rx
    } else {
        crossbeam_channel::never()
    };
    let probe = Probe {
        started: started.clone(),
        first_output: first_output.clone(),
        marker: args.until.as_ref().map(|m| m.as_bytes().to_vec()),
        tail: Vec::new(),
        found: args.until.as_ref().map(|_| found_tx),
    };
    let t0 = Instant::now();
    let vm = vmm::build(config, Box::new(probe)).context("build the VM")?;
    let build = t0.elapsed();
    let t1 = Instant::now();
    *started.lock().unwrap_or_else(|e| e.into_inner()) = Some(t1);
    let handle = vm.start().context("start the VM")?;
    let exited = handle.exited();
    let timeout = crossbeam_channel::after(Duration::from_secs(args.timeout));
    let (marker, exit) = select! {
        recv(found_rx) -> at => (at.ok(), None),
        recv(exited) -> reason => (None, reason.ok()),
        recv(timeout) -> _ => (None, None),
    };
    let end = t1.elapsed();
    let exit = match exit {
        Some(reason) => describe(&reason),
        None => {
            let _ = handle.request(Command::Stop);
            if marker.is_some() {
                "marker seen, stopped".to_string()
            } else {
                format!("timeout after {} s, stopped", args.timeout)
            }
        }
    };
    drop(handle);
    let first_output = *first_output.lock().unwrap_or_else(|e| e.into_inner());
    Ok(Sample {
        build,
        first_output,
        marker,
        end,
        exit,
    })
}

fn describe(reason: &ExitReason) -> String {
    match reason {
        ExitReason::PowerOff => "poweroff".into(),
        ExitReason::Reset => "reset".into(),
        ExitReason::DebugExit { code } => format!("debug exit {code:#x}"),
        ExitReason::Stopped => "stopped".into(),
        ExitReason::TripleFault { vcpu } => format!("triple fault on vCPU {vcpu}"),
        ExitReason::GuestError {
            vcpu, exit, rip, ..
        } => {
            format!("guest error on vCPU {vcpu}: {exit} at {rip:#x}")
        }
        ExitReason::VmmError { message } => format!("VMM error: {message}"),
    }
}

fn ms(d: Option<Duration>) -> String {
    d.map(|d| format!("{:.1}", d.as_secs_f64() * 1000.0))
        .unwrap_or_else(|| "-".into())
}

/// Reads one measured column of a sample.
type Column = fn(&Sample) -> Option<Duration>;

/// Min / median / max of each column over the runs that have a value.
fn summarize(samples: &[Sample]) {
    let columns: [(&str, Column); 4] = [
        ("build", |s| Some(s.build)),
        ("first output", |s| s.first_output),
        ("marker", |s| s.marker),
        ("end", |s| Some(s.end)),
    ];
    for (name, get) in columns {
        if let Some((min, median, max)) = stats(samples.iter().filter_map(get).collect()) {
            println!(
                "{name:>12}: min {} ms, median {} ms, max {} ms",
                ms(Some(min)),
                ms(Some(median)),
                ms(Some(max))
            );
        }
    }
}

fn stats(mut values: Vec<Duration>) -> Option<(Duration, Duration, Duration)> {
    if values.is_empty() {
        return None;
    }
    values.sort();
    Some((
        values[0],
        values[values.len() / 2],
        values[values.len() - 1],
    ))
}

/// What kind of KVM this is, so numbers are read in context.
fn host_kind() -> &'static str {
    let module = |m: &str| std::path::Path::new("/sys/module").join(m).exists();
    if module("kvm_intel") || module("kvm_amd") {
        "KVM with hardware virtualization"
    } else if module("kvm_pvm") {
        "kvm-pvm (instruction emulation: boot times are not representative)"
    } else {
        "unknown KVM"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(marker: &str) -> (Probe, Receiver<Duration>, Arc<Mutex<Option<Duration>>>) {
        let (tx, rx) = bounded(1);
        let first = Arc::new(Mutex::new(None));
        let probe = Probe {
            started: Arc::new(Mutex::new(Some(Instant::now()))),
            first_output: first.clone(),
            marker: Some(marker.as_bytes().to_vec()),
            tail: Vec::new(),
            found: Some(tx),
        };
        (probe, rx, first)
    }

    #[test]
    fn finds_a_marker_split_across_writes() {
        let (mut p, rx, first) = probe("Linux version");
        p.write_all(b"early junk Lin").unwrap();
        assert!(first.lock().unwrap().is_some());
        assert!(rx.try_recv().is_err());
        p.write_all(b"ux vers").unwrap();
        assert!(rx.try_recv().is_err());
        p.write_all(b"ion 6.1").unwrap();
        assert!(rx.try_recv().is_ok());
    }

    #[test]
    fn tail_stays_bounded_without_a_match() {
        let (mut p, rx, _) = probe("MARK");
        for _ in 0..1000 {
            p.write_all(b"0123456789abcdef").unwrap();
        }
        assert!(p.tail.len() < 4);
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn stats_are_min_median_max() {
        let d = Duration::from_millis;
        assert_eq!(stats(vec![d(5), d(1), d(3)]), Some((d(1), d(3), d(5))));
        assert_eq!(stats(vec![]), None);
    }
}
