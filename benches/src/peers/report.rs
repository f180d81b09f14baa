//! The Markdown table people read: one row per IPAM, round and concurrency,
//! with the ratio of each peer's ADD p50 and throughput to railyard's.

use std::time::Duration;

use super::{quantile, Round};

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

/// Pods per second: one decimal below 10, where whole pods hide the difference.
fn rate(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

/// The table of `rounds` (railyard's rows are the ratios' reference).
pub fn table(rounds: &[Round]) -> String {
    let mut out = String::from(
        "| addresses/pod | runtimes | IPAM | ADD p50 ms | ADD p99 ms | DEL p50 ms | DEL p99 ms | pods/s | ADD p50 / railyard's | pods/s / railyard's | correct |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rounds {
        let ours = rounds
            .iter()
            .find(|o| o.ipam == "railyard" && o.rails == r.rails && o.concurrency == r.concurrency);
        let (p50_ratio, tp_ratio) = match ours {
            Some(o) => (
                format!(
                    "{:.2}",
                    quantile(&r.add, 0.5).as_secs_f64() / quantile(&o.add, 0.5).as_secs_f64()
                ),
                format!("{:.2}", r.pods_per_sec() / o.pods_per_sec()),
            ),
            None => ("-".into(), "-".into()),
        };
        let correct = if r.correct() {
            "yes".to_string()
        } else {
            format!(
                "**NO**: {} failed, {} duplicate, {} left",
                r.failures.len(),
                r.duplicates.len(),
                r.leftovers.len()
            )
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.rails,
            r.concurrency,
            r.ipam,
            ms(quantile(&r.add, 0.5)),
            ms(quantile(&r.add, 0.99)),
            ms(quantile(&r.del, 0.5)),
            ms(quantile(&r.del, 0.99)),
            rate(r.pods_per_sec()),
            p50_ratio,
            tp_ratio,
            correct
        ));
    }
    out
}

/// The first problems of an incorrect round, for the error message.
pub fn problems(r: &Round) -> String {
    r.failures
        .iter()
        .take(3)
        .map(|f| format!("failed: {f}"))
        .chain(
            r.duplicates
                .iter()
                .take(3)
                .map(|d| format!("given twice: {d}")),
        )
        .chain(
            r.leftovers
                .iter()
                .take(3)
                .map(|l| format!("left after DEL: {l}")),
        )
        .collect::<Vec<_>>()
        .join("\n  ")
}
