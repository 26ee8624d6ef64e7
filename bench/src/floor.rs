//! The floor under every process-isolated platform: one message to another
//! process and back. A request through Nimbus crosses client → Nimbus →
//! instance → Nimbus → client, a bare server client → server → client, so
//! what Nimbus adds over the bare server is at least one such round trip plus
//! its own work. The round trip is measured twice: with both processes on one
//! CPU (a context switch each way) and on two CPUs (waking the other CPU each
//! way), because on a VM that does not poll before halting an idle vCPU, the
//! second costs several times the first, and the scheduler spreads a lightly
//! loaded platform's processes over the CPUs.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

/// Round trips per run, after a warm-up.
const TRIPS: usize = 20_000;
const WARMUP: usize = 1_000;

/// p50 round trips (µs) of one run, on one CPU and across two.
#[derive(Debug, Clone, Copy)]
pub struct Floor {
    pub same_cpu: f64,
    pub cross_cpu: Option<f64>,
}

/// The child's side: pin to `cpu`, then echo each 8-byte message until stdin
/// closes. Exits with 3 if it cannot be pinned, so no figure is mislabelled.
pub fn echo(cpu: usize) {
    if pin(cpu).is_err() {
        std::process::exit(3);
    }
    let mut input = std::io::stdin().lock();
    let mut output = std::io::stdout().lock();
    let mut buf = [0u8; 8];
    while input.read_exact(&mut buf).is_ok() {
        if output.write_all(&buf).and_then(|_| output.flush()).is_err() {
            break;
        }
    }
}

/// Pins the calling thread (and what it spawns later) to one CPU.
fn pin(cpu: usize) -> Result<()> {
    // SAFETY: cpu_set_t is plain data; CPU_ZERO/CPU_SET only write inside it,
    // and sched_setaffinity(0, …) reads it for the calling thread.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        bail!("sched_setaffinity: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// p50 (µs) of round trips from a thread on CPU `mine` to a child on CPU `theirs`.
fn round_trip(mine: usize, theirs: usize) -> Result<f64> {
    let exe = std::env::current_exe()?;
    // A thread of its own, so that pinning it leaves the rest of the bench free.
    std::thread::spawn(move || -> Result<f64> {
        pin(mine)?;
        let mut child = Command::new(&exe)
            .args(["--echo-child", &theirs.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the echo child")?;
        let mut to = child.stdin.take().expect("piped");
        let mut from = child.stdout.take().expect("piped");
        let mut buf = [0u8; 8];
        let mut samples = Vec::with_capacity(TRIPS);
        for i in 0..WARMUP + TRIPS {
            let t = Instant::now();
            to.write_all(&(i as u64).to_le_bytes())?;
            from.read_exact(&mut buf)?;
            if i >= WARMUP {
                samples.push(t.elapsed().as_secs_f64() * 1e6);
            }
        }
        drop(to);
        let status = child.wait()?;
        if !status.success() {
            bail!("the echo child could not be pinned to CPU {theirs} ({status})");
        }
        samples.sort_by(f64::total_cmp);
        Ok(samples[samples.len() / 2])
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the round-trip thread panicked"))?
}

/// The CPUs this process may run on (its affinity mask, which taskset and
/// cpusets narrow), in order.
fn allowed_cpus() -> Result<Vec<usize>> {
    // SAFETY: sched_getaffinity(0, …) fills the cpu_set_t we own for the
    // calling thread; CPU_ISSET only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            bail!("sched_getaffinity: {}", std::io::Error::last_os_error());
        }
        Ok((0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect())
    }
}

/// One measurement per run, on the first one or two CPUs this process may use.
pub fn process_round_trips(runs: usize) -> Result<Vec<Floor>> {
    let cpus = allowed_cpus()?;
    let Some(&first) = cpus.first() else {
        bail!("no CPU in this process's affinity mask");
    };
    (0..runs)
        .map(|_| {
            Ok(Floor {
                same_cpu: round_trip(first, first)?,
                cross_cpu: match cpus.get(1) {
                    Some(&second) => Some(round_trip(first, second)?),
                    None => None,
                },
            })
        })
        .collect()
}
