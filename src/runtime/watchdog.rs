//! systemd's watchdog (`WatchdogSec=` in the unit, `WATCHDOG_USEC` in the environment): shard 0
//! pings every shard over the mesh at half the interval and sends `WATCHDOG=1` only when all
//! of them answered. A shard whose executor is stuck (a blocking call, a task that never
//! yields) stops answering, the pings stop, and systemd restarts Atlas after the interval.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use super::app::App;
use super::sd_notify::Notifier;

/// How long one round of pings may wait for the shards: at most half the period, at most 2 s.
pub fn ping_limit(period: Duration) -> Duration {
    (period / 2).min(Duration::from_secs(2))
}

/// Runs on shard 0 until shutdown starts.
pub async fn run<A: App>(shard: Rc<A>, notifier: Arc<Notifier>, interval: Duration) {
    let core = shard.core();
    let period = interval / 2;
    let limit = ping_limit(period);
    log::info!(
        "watchdog: systemd expects a ping every {:.1}s; checking every shard each {:.1}s",
        interval.as_secs_f64(),
        period.as_secs_f64()
    );
    loop {
        let answers = core.mesh.broadcast(A::ping, limit).await;
        if core.is_draining() {
            return;
        }
        let silent: Vec<usize> = answers
            .iter()
            .enumerate()
            .filter(|(_, a)| !a.as_ref().is_ok_and(A::is_pong))
            .map(|(k, _)| k)
            .collect();
        if silent.is_empty() {
            notifier.send("WATCHDOG=1");
        } else {
            log::warn!(
                "watchdog: shard(s) {silent:?} did not answer within {} ms; not pinging systemd",
                limit.as_millis()
            );
        }
        glommio::timer::sleep(period).await;
    }
}
