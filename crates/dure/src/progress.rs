//! Watching work the controller does: a cluster operation step by step, or
//! one server until it reaches the state asked for, with blocking reads
//! (each read returns when the operation or the server changed, never
//! polling). On a terminal the steps are live spinner lines; elsewhere
//! (pipes, CI logs) one plain line per change, so logs stay readable.

use crate::exit::{Exit, Explained, Failure};
use crate::output::{paint, span, Colour};
use dure_api::{
    Client, ClientError, MemberStep, Operation, OperationKind, OperationStatus, ServerView,
    StepStatus, Watched,
};
use dure_core::ServerState;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// The longest one blocking read waits for a change.
const WATCH_WAIT: Duration = Duration::from_secs(30);
/// How long a server request may go unseen by its agent before we say so.
const SLOW_AGENT: Duration = Duration::from_secs(1);
/// How long following rides out a controller that does not answer (a
/// restart), and the pause between tries.
const UNREACHABLE_GRACE: Duration = Duration::from_secs(5);
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Spinner lines redrawn in place (stdout and stderr are terminals).
    Live,
    /// One line on stdout per change.
    Plain,
    /// Nothing; the caller prints the final JSON.
    Quiet,
}

impl Mode {
    pub fn choose(json: bool) -> Mode {
        if json {
            Mode::Quiet
        } else if std::io::stdout().is_terminal() && std::io::stderr().is_terminal() {
            Mode::Live
        } else {
            Mode::Plain
        }
    }
}

/// Returns the words for a step status.
pub fn step_label(status: StepStatus) -> &'static str {
    match status {
        StepStatus::Pending => "pending",
        StepStatus::InProgress => "in progress",
        StepStatus::Done => "done",
        StepStatus::Failed => "failed",
        StepStatus::Skipped => "skipped",
        StepStatus::AlreadyDone => "already done",
    }
}

/// Returns "in progress: waiting for ready" or just "done".
fn step_text(step: &MemberStep) -> String {
    let label = step_label(step.status);
    match step.message.as_deref().filter(|m| !m.is_empty()) {
        Some(message) => format!("{label}: {message}"),
        None => label.to_string(),
    }
}

/// What a step shows: its status and message; a change of either is news.
type Shown = (StepStatus, Option<String>);

/// Tracks which step changes were already printed in plain mode.
#[derive(Debug, Default)]
pub struct PlainSteps {
    seen: HashMap<String, Shown>,
}

impl PlainSteps {
    /// Returns a line per step whose status or message changed since the
    /// last call; pending steps are not news.
    pub fn changes(&mut self, steps: &[MemberStep]) -> Vec<String> {
        let mut lines = Vec::new();
        for step in steps {
            let now = (step.status, step.message.clone());
            let changed = self.seen.get(&step.server) != Some(&now);
            if changed && step.status != StepStatus::Pending {
                lines.push(format!("{} {}", step.server, step_text(step)));
            }
            self.seen.insert(step.server.clone(), now);
        }
        lines
    }
}

/// One spinner line per member, redrawn in place.
struct LiveSteps {
    multi: MultiProgress,
    /// Per member: its bar and what it shows, to redraw only on change.
    bars: Vec<(String, ProgressBar, Option<Shown>)>,
    width: usize,
}

impl LiveSteps {
    fn new() -> LiveSteps {
        LiveSteps {
            multi: MultiProgress::new(),
            bars: Vec::new(),
            width: 0,
        }
    }

    fn update(&mut self, steps: &[MemberStep]) {
        let width = steps
            .iter()
            .map(|s| s.server.chars().count())
            .max()
            .unwrap_or(0)
            .max(self.width);
        let widened = width != self.width;
        self.width = width;
        for step in steps {
            let index = match self
                .bars
                .iter()
                .position(|(name, _, _)| name == &step.server)
            {
                Some(index) => index,
                None => {
                    let bar = self.multi.add(ProgressBar::new_spinner());
                    self.bars.push((step.server.clone(), bar, None));
                    self.bars.len() - 1
                }
            };
            let (_, bar, shown) = &mut self.bars[index];
            let now = Some((step.status, step.message.clone()));
            if widened || *shown != now {
                style_bar(bar, step, width);
                *shown = now;
            }
        }
    }

    fn finish(self) {
        for (_, bar, _) in &self.bars {
            bar.finish();
        }
    }

    fn clear(self) {
        for (_, bar, _) in &self.bars {
            bar.finish_and_clear();
        }
    }
}

/// Sets a member's line. The whole line is the message, set in one call,
/// so no frame shows a new symbol beside an old status.
fn style_bar(bar: &ProgressBar, step: &MemberStep, width: usize) {
    let name = format!("{:<width$}", step.server);
    let symbol = match step.status {
        StepStatus::InProgress => None,
        StepStatus::Pending => Some(paint("·", Colour::Gray)),
        StepStatus::Done | StepStatus::AlreadyDone => Some(paint("✔", Colour::Green)),
        StepStatus::Failed => Some(paint("✖", Colour::Red)),
        StepStatus::Skipped => Some(paint("-", Colour::Gray)),
    };
    let (template, line) = match symbol {
        None => (
            "{spinner:.cyan} {msg}",
            format!("{name} {}", step_text(step)),
        ),
        Some(symbol) => ("{msg}", format!("{symbol} {name} {}", step_text(step))),
    };
    // The templates are constants; a refusal would be a bug here, and the
    // default style is a fine fallback rather than a crash.
    let style =
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_spinner());
    bar.set_style(style);
    if step.status == StepStatus::InProgress {
        bar.enable_steady_tick(Duration::from_millis(100));
    } else {
        bar.disable_steady_tick();
    }
    bar.set_message(line);
}

/// Returns the closing sentence of an operation.
pub fn summary(op: &Operation) -> String {
    let took = op
        .finished_ms
        .map(|end| format!(" in {}", precise_span(end.saturating_sub(op.created_ms))))
        .unwrap_or_default();
    let done = match op.kind {
        OperationKind::Start => "started",
        OperationKind::Stop => "stopped",
        OperationKind::Kill => "killed",
        OperationKind::Restart => "restarted",
        OperationKind::Deploy => "deployed to",
    };
    match op.status {
        OperationStatus::Succeeded => format!(
            "cluster `{}` {done}{took} (operation {})",
            op.cluster, op.id
        ),
        OperationStatus::Running => format!("operation {} is still running", op.id),
        OperationStatus::Failed => {
            let why = op.message.clone().or_else(|| {
                op.steps
                    .iter()
                    .find(|s| s.status == StepStatus::Failed)
                    .map(|s| format!("member `{}` {}", s.server, step_text(s)))
            });
            match why {
                Some(why) => format!(
                    "operation {} to {} cluster `{}` failed: {why}",
                    op.id, op.kind, op.cluster
                ),
                None => format!(
                    "operation {} to {} cluster `{}` failed",
                    op.id, op.kind, op.cluster
                ),
            }
        }
    }
}

/// Returns "1.2s" below a minute, else the short span.
fn precise_span(ms: u64) -> String {
    if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        span(ms)
    }
}

/// The error for Ctrl-C while following: the work goes on without us.
fn interrupted(what: String) -> anyhow::Error {
    anyhow::Error::new(Explained {
        message: what,
        exit: Exit::Interrupted,
    })
}

/// Tries `fetch` until it answers, riding out a controller that does not
/// answer for a few seconds (a restart); other errors end the wait.
async fn retry<T, F, Fut>(mut fetch: F) -> Result<T, ClientError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ClientError>>,
{
    let started = Instant::now();
    loop {
        match fetch().await {
            Err(ClientError::Unreachable { .. }) if started.elapsed() < UNREACHABLE_GRACE => {
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            other => return other,
        }
    }
}

/// Where the next blocking read starts: the index just answered, or 0
/// (answer at once) when it went backwards, as after a controller restart.
fn next_index<T>(before: u64, answer: &Watched<T>) -> u64 {
    if answer.index < before {
        0
    } else {
        answer.index
    }
}

/// Follows an operation until it is no longer running, showing each
/// member's step; returns the finished operation.
pub async fn follow_operation(
    client: &Client,
    first: Operation,
    mode: Mode,
) -> anyhow::Result<Operation> {
    let id = first.id.clone();
    let mut live = (mode == Mode::Live).then(LiveSteps::new);
    let mut plain = PlainSteps::default();
    let follow = async {
        let mut op = first;
        // 0: the first read answers at once, with the index to wait past.
        let mut index = 0;
        loop {
            match (&mut live, mode) {
                (Some(live), _) => live.update(&op.steps),
                (None, Mode::Plain) => {
                    for line in plain.changes(&op.steps) {
                        println!("{line}");
                    }
                }
                _ => {}
            }
            if op.status != OperationStatus::Running {
                return Ok::<Operation, ClientError>(op);
            }
            let answer = retry(|| client.watch_operation(&id, index, WATCH_WAIT)).await?;
            index = next_index(index, &answer);
            op = answer.value;
        }
    };
    let result = tokio::select! {
        result = follow => result,
        _ = tokio::signal::ctrl_c() => {
            if let Some(live) = live.take() {
                live.clear();
            }
            return Err(interrupted(format!(
                "stopped following; operation {id} goes on in the controller: see `dure operation show {id}`"
            )));
        }
    };
    match live {
        Some(live) if result.is_ok() => live.finish(),
        Some(live) => live.clear(),
        None => {}
    }
    result.map_err(|e| anyhow::Error::new(e).context(format!("following operation {id}")))
}

/// Follows a server after a start, stop or kill request that returned
/// `generation`, until its agent reports that generation in a final state
/// for `kind` (ready or failed; stopped or failed). Returns the final view.
pub async fn wait_server(
    client: &Client,
    name: &str,
    kind: OperationKind,
    generation: u64,
    timeout: Duration,
    mode: Mode,
) -> anyhow::Result<ServerView> {
    let started = Instant::now();
    let spinner = (mode == Mode::Live).then(|| {
        let bar = ProgressBar::new_spinner();
        if let Ok(style) = ProgressStyle::with_template("{spinner:.cyan} {msg}") {
            bar.set_style(style);
        }
        bar.set_message(format!("{name}: {kind} requested"));
        bar.enable_steady_tick(Duration::from_millis(100));
        bar
    });
    let mut last_line = String::new();
    let wait = async {
        let mut index = 0;
        loop {
            // Until the agent is late, wake in time to say so; never past
            // the timeout.
            let until = if started.elapsed() < SLOW_AGENT {
                SLOW_AGENT
            } else {
                timeout
            };
            let wait = until.saturating_sub(started.elapsed()).min(WATCH_WAIT);
            let answer = retry(|| client.watch_server(name, index, wait)).await?;
            index = next_index(index, &answer);
            let view = answer.value;
            let current = view.observed.generation >= generation;
            let line = if current {
                server_line(&view)
            } else if started.elapsed() >= SLOW_AGENT {
                format!("{name} waiting for its agent to pick up the request")
            } else {
                // The agent usually answers within a poll or two; saying
                // so every time would only be noise.
                String::new()
            };
            if !line.is_empty() && line != last_line {
                match &spinner {
                    Some(bar) => bar.set_message(line.clone()),
                    None if mode == Mode::Plain => println!("{line}"),
                    None => {}
                }
                last_line = line;
            }
            if current && kind.member_outcome(view.observed.state).is_some() {
                return Ok(view);
            }
            if started.elapsed() >= timeout {
                let goal = match kind {
                    OperationKind::Start | OperationKind::Restart | OperationKind::Deploy => {
                        "ready"
                    }
                    OperationKind::Stop | OperationKind::Kill => "stopped",
                };
                let now = if current {
                    format!("it is {} now", view.observed.state)
                } else {
                    "its agent has not taken up the request yet".to_string()
                };
                return Err(anyhow::Error::new(Failure(format!(
                    "timed out after {} waiting for server `{name}` to be {goal}; {now} (see `dure server show {name}`)",
                    span(timeout.as_millis().try_into().unwrap_or(u64::MAX)),
                ))));
            }
        }
    };
    let result = tokio::select! {
        result = wait => result,
        _ = tokio::signal::ctrl_c() => Err(interrupted(format!(
            "stopped waiting; the request for server `{name}` stands: see `dure server show {name}`"
        ))),
    };
    if let Some(bar) = spinner {
        bar.finish_and_clear();
        // The last state stays on screen as a plain line.
        if result.is_ok() {
            println!("{last_line}");
        }
    }
    result
}

/// Returns "web1 ready (pid 123)" or "web1 failed: exited with 1".
pub fn server_line(view: &ServerView) -> String {
    let observed = &view.observed;
    let mut line = format!("{} {}", observed.name, observed.state);
    if let Some(pid) = observed.pid.filter(|_| observed.state.is_alive()) {
        line.push_str(&format!(" (pid {pid})"));
    }
    if observed.state == ServerState::Unknown {
        line.push_str(" (its node does not report; is the agent running?)");
    }
    if let Some(error) = observed
        .last_error
        .as_deref()
        .filter(|_| observed.state == ServerState::Failed)
    {
        line.push_str(&format!(": {error}"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use dure_core::operation::OperationOptions;

    fn step(server: &str, status: StepStatus, message: Option<&str>) -> MemberStep {
        MemberStep {
            server: server.into(),
            status,
            message: message.map(str::to_string),
            started_ms: None,
            finished_ms: None,
        }
    }

    #[test]
    fn plain_mode_prints_each_change_once() {
        let mut plain = PlainSteps::default();
        let steps = vec![
            step("demo-1", StepStatus::InProgress, None),
            step("demo-2", StepStatus::Pending, None),
        ];
        assert_eq!(plain.changes(&steps), vec!["demo-1 in progress"]);
        assert!(plain.changes(&steps).is_empty());
        let steps = vec![
            step("demo-1", StepStatus::Done, None),
            step("demo-2", StepStatus::Failed, Some("exited with code 1")),
        ];
        assert_eq!(
            plain.changes(&steps),
            vec!["demo-1 done", "demo-2 failed: exited with code 1"]
        );
        let steps = vec![step(
            "demo-3",
            StepStatus::Skipped,
            Some("an earlier member failed"),
        )];
        assert_eq!(
            plain.changes(&steps),
            vec!["demo-3 skipped: an earlier member failed"]
        );
    }

    #[test]
    fn a_blocking_read_starts_over_when_the_index_goes_backwards() {
        let answer = |index| Watched { index, value: () };
        assert_eq!(next_index(0, &answer(17)), 17);
        assert_eq!(next_index(17, &answer(17)), 17, "the wait ran out");
        assert_eq!(next_index(17, &answer(30)), 30);
        assert_eq!(next_index(30, &answer(4)), 0, "a restarted controller");
    }

    #[test]
    fn summaries() {
        let mut op = Operation {
            id: "op-7".into(),
            kind: OperationKind::Start,
            cluster: "demo".into(),
            options: OperationOptions::default(),
            status: OperationStatus::Succeeded,
            steps: vec![step("a", StepStatus::Done, None)],
            actor: "admin".into(),
            created_ms: 1_000,
            finished_ms: Some(3_500),
            message: None,
            left_standing: Vec::new(),
        };
        assert_eq!(
            summary(&op),
            "cluster `demo` started in 2.5s (operation op-7)"
        );
        op.status = OperationStatus::Failed;
        op.steps = vec![step("a", StepStatus::Failed, Some("port 8081 is in use"))];
        assert_eq!(
            summary(&op),
            "operation op-7 to start cluster `demo` failed: member `a` failed: port 8081 is in use"
        );
    }
}
