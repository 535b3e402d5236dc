//! The signal thread: SIGHUP reloads the configuration (the app's supervisor prepares its
//! part: what must be resolved again), the first SIGTERM or SIGINT drains the shards, the
//! second exits at once.

use super::*;

/// The signal thread: SIGHUP reloads, the first SIGTERM/SIGINT drains, the second exits.
pub(super) struct SignalWatcher<S: Supervisor> {
    /// The app's side of a reload.
    pub(super) supervisor: S,
    pub(super) shared: Arc<Shared>,
    pub(super) control: Control<UpdateOf<S>>,
    pub(super) reloader: Reloader,
    pub(super) notifier: Option<Arc<Notifier>>,
    /// The `STATUS=` line while serving.
    pub(super) status: String,
    /// When the drain started and its grace period (the L2 flush gets what is left of it).
    pub(super) drain_started: Arc<OnceLock<(Instant, Duration)>>,
}

impl<S: Supervisor> SignalWatcher<S> {
    pub(super) fn run(mut self, mut signals: signal_hook::iterator::Signals) {
        for signal in signals.forever() {
            if signal == signal_hook::consts::SIGHUP {
                if self.drain_started.get().is_some() {
                    log::info!("SIGHUP while draining: ignored");
                } else {
                    self.reload();
                }
                continue;
            }
            if self.drain_started.get().is_some() {
                log::warn!("second signal {signal}: exiting without waiting");
                std::process::exit(1);
            }
            let grace = self.reloader.current().shutdown_grace;
            let _ = self.drain_started.set((Instant::now(), grace));
            log::info!(
                "signal {signal}: draining (stop accepting, finish in-flight requests, up to {}s)",
                grace.as_secs()
            );
            self.notify(&format!(
                "STOPPING=1\nSTATUS=draining: finishing in-flight requests (up to {}s)",
                grace.as_secs()
            ));
            self.shared.draining.store(true, Ordering::Release);
            self.control.drain();
        }
    }

    /// Reads the configuration again and applies what can change without a restart.
    fn reload(&mut self) {
        self.notify(&format!(
            "RELOADING=1\nSTATUS=reloading the configuration\nMONOTONIC_USEC={}",
            sd_notify::monotonic_usec()
        ));
        match self.reloader.plan(|name| std::env::var(name).ok()) {
            Err(errors) => {
                log::error!(
                    "SIGHUP: the configuration is invalid; keeping the running one ({} problem(s)):",
                    errors.len()
                );
                for e in &errors {
                    log::error!("  {e}");
                }
            }
            Ok(plan) if plan.changes.is_empty() => {
                log::info!("SIGHUP: configuration read again; nothing changed");
            }
            Ok(mut plan) => {
                let update = self.supervisor.reload(&mut plan, self.reloader.current());
                for change in &plan.changes {
                    log::info!("SIGHUP: {}", reload::describe(change));
                }
                if plan.config.log != self.reloader.current().log {
                    crate::logging::set_filter(&plan.config.log);
                }
                if plan.changes.iter().any(|c| c.applied) {
                    let shards = self.shared.shards;
                    let reload = control::Reload {
                        config: Arc::new(plan.config.clone()),
                        update,
                    };
                    let applied = self.control.reload(reload, Duration::from_secs(2));
                    if applied == shards {
                        log::info!("SIGHUP: applied on all {shards} shards");
                    } else {
                        log::warn!(
                            "SIGHUP: applied on {applied} of {shards} shards within 2 s; the \
                             others apply it when they get to it"
                        );
                    }
                }
                self.reloader.commit(plan);
            }
        }
        self.notify(&format!("READY=1\nSTATUS={}", self.status));
    }

    fn notify(&self, state: &str) {
        if let Some(n) = &self.notifier {
            n.send(state);
        }
    }
}
