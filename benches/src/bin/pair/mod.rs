//! `bench-runner pair`: target ratios measured paired, so that they
//! measure the code and not the VM's speed mode (see `benches/src/lib.rs`).
//!
//! ```text
//! bench-runner pair [--rounds K] [--round-us T] [--batch B]
//!     --proc KEY=COMMAND ...          a process serving rounds
//!     --pair ID=KEY:OP/KEY:OP ...     numerator / denominator
//! ```
//!
//! A process is `bench-runner serve KIND` or `harness serve`, started once
//! and kept until the end (one process can serve both sides of a pair and
//! sides of several pairs: the C harness has distlog, LTTng and the floor
//! in one binary). For each pair, after one warm-up round a side (which
//! sizes that side's rounds to about T µs, 50 to 5 000 batches of B
//! calls), K rounds alternate numerator and denominator; each round's
//! ratio is numerator p50 / denominator p50, the two halves a few
//! milliseconds apart.
//!
//! Both halves of a round run on the same CPU: the speed mode is a
//! vCPU's, not the machine's (the same code in two processes, pinned to
//! the two CPUs, measured 8.8 and 12.5 ns at once), so the driver pins the
//! thread that runs the rounds (each process's main thread) to one CPU a
//! round, taking the CPUs it may use in turn, and flips the order of the
//! sides every pass over them, so neither side always runs first. Threads
//! the processes started before (the sidecar's, a writer thread) are not
//! pinned: they run where the scheduler puts them, as in the rows.
//!
//! One JSON line a pair: workload `pair`, the median
//! round ratio as `p50`, and in `extra` its quartiles, min and max and each
//! side's median and fast-mode (p10) round p50.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use distlog_benches::{cpus, pair_sample, pin};

struct Proc {
    child: Child,
    stdin: ChildStdin,
    out: BufReader<ChildStdout>,
}

impl Proc {
    fn spawn(cmd: &str) -> Result<Proc, String> {
        let mut w = cmd.split_whitespace();
        let prog = w.next().ok_or("empty command")?;
        let mut child = Command::new(prog)
            .args(w)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("{prog}: {e}"))?;
        let (Some(stdin), Some(out)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(format!("{prog}: no pipes"));
        };
        Ok(Proc {
            child,
            stdin,
            out: BufReader::new(out),
        })
    }

    /// One round of `op`: its p50 in ns/op.
    fn round(&mut self, op: &str, batches: usize, batch: usize) -> Result<f64, String> {
        writeln!(self.stdin, "{op} {batches} {batch}")
            .and_then(|_| self.stdin.flush())
            .map_err(|e| format!("{op}: {e}"))?;
        let mut line = String::new();
        self.out
            .read_line(&mut line)
            .map_err(|e| format!("{op}: {e}"))?;
        match line.trim().parse::<f64>() {
            Ok(v) if v > 0.0 => Ok(v),
            _ => Err(format!("{op}: no answer ({:?})", line.trim())),
        }
    }
}

/// Every value of a repeated option.
fn all(args: &[String], name: &str) -> Vec<String> {
    args.windows(2)
        .filter(|w| w[0] == name)
        .map(|w| w[1].clone())
        .collect()
}

struct Side<'a> {
    key: &'a str,
    op: &'a str,
    /// Batches a round (from the warm-up round).
    batches: usize,
}

fn side(s: &str) -> Option<Side<'_>> {
    let (key, op) = s.split_once(':')?;
    Some(Side {
        key,
        op,
        batches: 50,
    })
}

pub fn main(args: &[String]) {
    let quick = super::quick();
    let rounds: usize = super::arg_or(args, "--rounds", if quick { 4 } else { 40 });
    let round_ns = 1e3 * super::arg_or(args, "--round-us", if quick { 50.0 } else { 3000.0 });
    let batch: usize = super::arg_or(args, "--batch", if quick { 32 } else { 100 });
    let cmds: HashMap<String, String> = all(args, "--proc")
        .iter()
        .filter_map(|p| p.split_once('='))
        .map(|(k, c)| (k.to_string(), c.to_string()))
        .collect();
    let mut procs: HashMap<String, Proc> = HashMap::new();
    let cpus = cpus();
    for p in all(args, "--pair") {
        let parsed = p.split_once('=').and_then(|(id, s)| {
            let (a, b) = s.split_once('/')?;
            Some((id, side(a)?, side(b)?))
        });
        let Some((id, mut a, mut b)) = parsed else {
            super::die(&format!("pair: bad --pair {p:?} (ID=KEY:OP/KEY:OP)"))
        };
        let mut run = || -> Result<(), String> {
            for s in [&a, &b] {
                if !procs.contains_key(s.key) {
                    let cmd = cmds.get(s.key).ok_or(format!("no process {:?}", s.key))?;
                    procs.insert(s.key.to_string(), Proc::spawn(cmd)?);
                }
            }
            let mut ask = |s: &Side, cpu: usize| -> Result<f64, String> {
                let p = procs.get_mut(s.key).ok_or("gone")?;
                pin(p.child.id(), cpu);
                p.round(s.op, s.batches, batch)
            };
            // Short rounds keep both halves in one speed mode; a few
            // milliseconds keep a round's p50 above one preemption.
            let lo = if quick { 5 } else { 50 };
            for s in [&mut a, &mut b] {
                let warm = ask(s, cpus[0])?;
                s.batches = ((round_ns / (warm * batch as f64)) as usize).clamp(lo, 5000);
            }
            let (mut ra, mut rb, mut ratio) = (vec![], vec![], vec![]);
            for r in 0..rounds {
                let cpu = cpus[r % cpus.len()];
                let (va, vb) = if (r / cpus.len()).is_multiple_of(2) {
                    let va = ask(&a, cpu)?;
                    (va, ask(&b, cpu)?)
                } else {
                    let vb = ask(&b, cpu)?;
                    (ask(&a, cpu)?, vb)
                };
                ra.push(va);
                rb.push(vb);
                ratio.push(va / vb);
            }
            // A peer's cost can depend on the CPU (fastrace's Span: ~143 ns
            // on one, ~390 on the other, its collector thread elsewhere):
            // the median round ratio on each CPU, in the order of `cpus`.
            let by_cpu: Vec<f64> = (0..cpus.len())
                .map(|k| {
                    let mut v: Vec<f64> =
                        ratio.iter().skip(k).step_by(cpus.len()).copied().collect();
                    v.sort_by(|x, y| x.total_cmp(y));
                    v.get(v.len().saturating_sub(1) / 2)
                        .map_or(f64::NAN, |x| (x * 1e3).round() / 1e3)
                })
                .collect();
            pair_sample(id, ratio, ra, rb)
                .with("ratio_by_cpu", by_cpu)
                .with("cpus", cpus.iter().map(|&c| c as u64).collect::<Vec<_>>())
                .with("num_ops_per_round", (a.batches * batch) as u64)
                .with("den_ops_per_round", (b.batches * batch) as u64)
                .emit();
            Ok(())
        };
        if let Err(e) = run() {
            eprintln!("bench-runner pair {id}: skipped: {e}");
        }
    }
    for (_, mut p) in procs {
        drop(p.stdin);
        let _ = p.child.wait();
    }
}
