//! Long operations on a thread of their own, the same way for the window and the CLI.
//!
//! A job is a domain function `FnOnce(&Control, &Progress<P>) -> Result<T, E>`: it checks
//! [`Control`] for cancel (and pause) between steps and reports `P` values on
//! [`Progress`]. [`JobHandle::spawn`] runs it on a named thread and owns the cancel flag
//! and the channel back: every report wakes the caller (the window's repaint), and a job
//! that panics or whose thread vanishes ends with a [`JobError`] instead of leaving
//! anyone waiting. The window polls a handle once per frame ([`JobHandle::poll`]); the CLI
//! and tests block on it ([`JobHandle::join_with`], [`JobHandle::join`]).

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Called after each report (the window passes its repaint request).
pub type Waker = Arc<dyn Fn() + Send + Sync>;

/// A waker that does nothing (the CLI and tests block on the handle instead).
pub fn no_waker() -> Waker {
    Arc::new(|| {})
}

/// Counts every report and end of every job in the process, so that a test driving the
/// window can wait for "something happened in the background" instead of sleeping.
static ACTIVITY: (Mutex<u64>, Condvar) = (Mutex::new(0), Condvar::new());

/// Records background activity (jobs do it on each report; long-lived workers such as the
/// thumbnail loader call it when they deliver).
pub fn note_activity() {
    let (count, changed) = &ACTIVITY;
    if let Ok(mut n) = count.lock() {
        *n = n.wrapping_add(1);
    }
    changed.notify_all();
}

/// The activity count now (see [`wait_for_activity`]).
pub fn activity() -> u64 {
    ACTIVITY.0.lock().map_or(0, |n| *n)
}

/// Blocks until the activity count differs from `seen`, or `timeout` passes (a guard
/// against a hang, not a measurement); returns the count then.
pub fn wait_for_activity(seen: u64, timeout: Duration) -> u64 {
    let (count, changed) = &ACTIVITY;
    let Ok(n) = count.lock() else {
        return seen;
    };
    changed
        .wait_timeout_while(n, timeout, |n| *n == seen)
        .map_or(seen, |(n, _)| *n)
}

/// Cancel and pause flags shared by a job and whoever started it.
#[derive(Debug, Clone, Default)]
pub struct Control {
    /// Set to stop at the next step (what is done stays done).
    pub cancel: Arc<AtomicBool>,
    /// Set to hold new work (jobs that support it, e.g. the harvest).
    pub pause: Arc<AtomicBool>,
}

impl Control {
    /// Asks the job to stop.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    /// Whether the job was asked to stop.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// Holds (`true`) or resumes (`false`) new work.
    pub fn set_paused(&self, paused: bool) {
        self.pause.store(paused, Ordering::Relaxed);
    }

    /// Whether new work is on hold.
    pub fn is_paused(&self) -> bool {
        self.pause.load(Ordering::Relaxed)
    }
}

/// Where a job reports progress: cheap to clone, usable from any thread.
pub struct Progress<P> {
    sink: Arc<dyn Fn(P) + Send + Sync>,
}

impl<P> Clone for Progress<P> {
    fn clone(&self) -> Self {
        Self {
            sink: Arc::clone(&self.sink),
        }
    }
}

impl<P> fmt::Debug for Progress<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Progress")
    }
}

impl<P: 'static> Progress<P> {
    /// Reports to `sink`.
    pub fn new(sink: impl Fn(P) + Send + Sync + 'static) -> Self {
        Self {
            sink: Arc::new(sink),
        }
    }

    /// Drops every report.
    pub fn ignore() -> Self {
        Self::new(|_| {})
    }

    /// Reports into a channel (for callers that run a job on their own thread).
    pub fn channel() -> (Self, Receiver<P>)
    where
        P: Send,
    {
        let (tx, rx) = mpsc::channel();
        (
            Self::new(move |p| {
                let _ = tx.send(p);
            }),
            rx,
        )
    }

    /// Reports `p`.
    pub fn report(&self, p: P) {
        (self.sink)(p);
    }

    /// The same reports, converted (for a step of a larger job).
    pub fn map<Q: 'static>(&self, f: impl Fn(Q) -> P + Send + Sync + 'static) -> Progress<Q> {
        let sink = Arc::clone(&self.sink);
        Progress::new(move |q| sink(f(q)))
    }
}

/// Why a job ended without a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobError<E> {
    /// The job's own error.
    Failed(E),
    /// The job panicked (a bug): its message.
    Panicked {
        /// The job's name.
        job: String,
        /// The panic message.
        message: String,
    },
    /// The job's thread ended without a result.
    Vanished {
        /// The job's name.
        job: String,
    },
    /// The job's thread could not be started.
    Spawn {
        /// The job's name.
        job: String,
        /// The OS's reason.
        message: String,
    },
}

impl<E: fmt::Display> fmt::Display for JobError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Failed(e) => e.fmt(f),
            Self::Panicked { job, message } => {
                write!(f, "the {job} stopped on an internal error: {message}")
            }
            Self::Vanished { job } => write!(f, "the {job} stopped unexpectedly"),
            Self::Spawn { job, message } => write!(f, "cannot start the {job}: {message}"),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for JobError<E> {}

impl<E> JobError<E> {
    /// The job's own error converted; the others as they are.
    pub fn map<F>(self, f: impl FnOnce(E) -> F) -> JobError<F> {
        match self {
            Self::Failed(e) => JobError::Failed(f(e)),
            Self::Panicked { job, message } => JobError::Panicked { job, message },
            Self::Vanished { job } => JobError::Vanished { job },
            Self::Spawn { job, message } => JobError::Spawn { job, message },
        }
    }
}

impl<E: fmt::Display> JobError<E> {
    /// The message a person reads.
    pub fn message(&self) -> String {
        self.to_string()
    }
}

enum Message<T, P, E> {
    Progress(P),
    Done(Result<T, JobError<E>>),
}

/// What [`JobHandle::poll`] found.
#[derive(Debug)]
pub struct Polled<T, P, E> {
    /// Reports since the last poll, in order.
    pub progress: Vec<P>,
    /// The outcome, once the job has ended (given once).
    pub done: Option<Result<T, JobError<E>>>,
}

/// A running job: its thread, cancel flag and reports.
pub struct JobHandle<T, P = (), E = String> {
    name: String,
    control: Control,
    rx: Receiver<Message<T, P, E>>,
    thread: Option<JoinHandle<()>>,
    finished: bool,
}

impl<T, P, E> fmt::Debug for JobHandle<T, P, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobHandle")
            .field("name", &self.name)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

/// The text of a panic payload.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}

impl<T, P, E> JobHandle<T, P, E>
where
    T: Send + 'static,
    P: Send + 'static,
    E: Send + 'static,
{
    /// Runs `job` on a thread named `name` (also the job's name in messages, e.g.
    /// "harvest"), with a fresh [`Control`]; `wake` is called after each report and at the
    /// end. A panic cancels the job's control (stopping helpers that share it) and ends
    /// the job with [`JobError::Panicked`].
    pub fn spawn<F>(name: &str, wake: Waker, job: F) -> Result<Self, JobError<E>>
    where
        F: FnOnce(&Control, &Progress<P>) -> Result<T, E> + Send + 'static,
    {
        Self::spawn_with(name, Control::default(), wake, job)
    }

    /// [`JobHandle::spawn`] with a given control (shared with other parts of the caller).
    pub fn spawn_with<F>(
        name: &str,
        control: Control,
        wake: Waker,
        job: F,
    ) -> Result<Self, JobError<E>>
    where
        F: FnOnce(&Control, &Progress<P>) -> Result<T, E> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel::<Message<T, P, E>>();
        let progress = {
            let tx: Sender<Message<T, P, E>> = tx.clone();
            let wake = Arc::clone(&wake);
            // A Sender is Sync since Rust 1.72: reports may come from any helper thread.
            Progress::new(move |p| {
                if tx.send(Message::Progress(p)).is_ok() {
                    wake();
                    note_activity();
                }
            })
        };
        let worker_control = control.clone();
        let job_name = name.to_owned();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    job(&worker_control, &progress)
                }));
                let result = match outcome {
                    Ok(r) => r.map_err(JobError::Failed),
                    Err(panic) => {
                        worker_control.cancel();
                        Err(JobError::Panicked {
                            job: job_name,
                            message: panic_message(panic.as_ref()),
                        })
                    }
                };
                drop(progress);
                let _ = tx.send(Message::Done(result));
                wake();
                note_activity();
            })
            .map_err(|e| JobError::Spawn {
                job: name.to_owned(),
                message: e.to_string(),
            })?;
        Ok(Self {
            name: name.to_owned(),
            control,
            rx,
            thread: Some(thread),
            finished: false,
        })
    }

    /// The job's cancel and pause flags.
    pub fn control(&self) -> &Control {
        &self.control
    }

    /// Asks the job to stop at its next step.
    pub fn cancel(&self) {
        self.control.cancel();
    }

    /// Whether the outcome was already given.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    fn vanished(&self) -> JobError<E> {
        JobError::Vanished {
            job: self.name.clone(),
        }
    }

    fn take(&mut self, m: Message<T, P, E>, into: &mut Polled<T, P, E>) {
        match m {
            Message::Progress(p) => into.progress.push(p),
            Message::Done(r) => {
                self.finished = true;
                into.done = Some(r);
            }
        }
    }

    /// Takes what arrived without waiting (once per frame in the window).
    pub fn poll(&mut self) -> Polled<T, P, E> {
        let mut out = Polled {
            progress: Vec::new(),
            done: None,
        };
        while !self.finished {
            match self.rx.try_recv() {
                Ok(m) => self.take(m, &mut out),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    self.finished = true;
                    out.done = Some(Err(self.vanished()));
                }
            }
        }
        out
    }

    /// Waits up to `timeout` for the next report or the end (tests driving a window use
    /// this instead of sleeping); returns what arrived, as [`JobHandle::poll`] does.
    pub fn wait(&mut self, timeout: Duration) -> Polled<T, P, E> {
        let mut out = Polled {
            progress: Vec::new(),
            done: None,
        };
        if self.finished {
            return out;
        }
        match self.rx.recv_timeout(timeout) {
            Ok(m) => self.take(m, &mut out),
            Err(RecvTimeoutError::Timeout) => return out,
            Err(RecvTimeoutError::Disconnected) => {
                self.finished = true;
                out.done = Some(Err(self.vanished()));
                return out;
            }
        }
        let more = self.poll();
        out.progress.extend(more.progress);
        if more.done.is_some() {
            out.done = more.done;
        }
        out
    }

    /// Blocks until the job ends, handing each report to `on_progress` in order.
    pub fn join_with(mut self, mut on_progress: impl FnMut(P)) -> Result<T, JobError<E>> {
        let result = loop {
            match self.rx.recv() {
                Ok(Message::Progress(p)) => on_progress(p),
                Ok(Message::Done(r)) => break r,
                Err(_) => break Err(self.vanished()),
            }
        };
        self.finished = true;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        result
    }

    /// Blocks until the job ends, dropping its reports.
    pub fn join(self) -> Result<T, JobError<E>> {
        self.join_with(|_| {})
    }
}

impl<T, P, E> Drop for JobHandle<T, P, E> {
    /// A handle dropped before its job ended cancels it (the window closed, the view was
    /// rebuilt); the thread is not waited for.
    fn drop(&mut self) {
        if !self.finished {
            self.control.cancel();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn reports_arrive_in_order_then_the_result_and_each_wakes_the_caller() {
        let wakes = Arc::new(AtomicUsize::new(0));
        let w = Arc::clone(&wakes);
        let h: JobHandle<u32, u32> = JobHandle::spawn(
            "count",
            Arc::new(move || {
                w.fetch_add(1, Ordering::SeqCst);
            }),
            |_, p| {
                for i in 0..5 {
                    p.report(i);
                }
                Ok(7)
            },
        )
        .unwrap();
        let mut seen = Vec::new();
        assert_eq!(h.join_with(|p| seen.push(p)), Ok(7));
        assert_eq!(seen, vec![0, 1, 2, 3, 4]);
        // Five reports and the end.
        assert_eq!(wakes.load(Ordering::SeqCst), 6);
    }

    #[test]
    fn a_panic_is_an_error_that_names_the_job_and_cancels_its_control() {
        let h: JobHandle<(), ()> = JobHandle::spawn("prediction pass", no_waker(), |_, _| {
            panic!("index out of range")
        })
        .unwrap();
        let control = h.control().clone();
        let e = h.join().unwrap_err();
        assert_eq!(
            e.to_string(),
            "the prediction pass stopped on an internal error: index out of range"
        );
        assert!(control.is_cancelled());
    }

    #[test]
    fn the_jobs_own_error_is_given_as_it_is() {
        let h: JobHandle<(), (), String> =
            JobHandle::spawn(
                "import",
                no_waker(),
                |_, _| Err("no such folder".to_owned()),
            )
            .unwrap();
        assert_eq!(h.join(), Err(JobError::Failed("no such folder".to_owned())));
    }

    #[test]
    fn cancel_reaches_the_job_and_poll_gives_the_outcome_once() {
        let (started_tx, started_rx) = mpsc::channel();
        let mut h: JobHandle<&str, ()> = JobHandle::spawn("wait", no_waker(), move |c, _| {
            let _ = started_tx.send(());
            // Blocks on the flag alone: the test's cancel is what ends it.
            while !c.is_cancelled() {
                std::thread::yield_now();
            }
            Ok("stopped")
        })
        .unwrap();
        started_rx.recv().unwrap();
        assert!(h.poll().done.is_none());
        h.cancel();
        let mut done = None;
        while done.is_none() {
            done = h.wait(Duration::from_secs(3600)).done;
        }
        assert_eq!(done, Some(Ok("stopped")));
        assert!(h.is_finished());
        assert!(h.poll().done.is_none(), "the outcome is given once");
    }

    #[test]
    fn a_channel_that_closes_without_a_result_ends_the_wait_with_an_error() {
        // A handle whose sending side is gone (what a thread killed before it could
        // answer looks like).
        let (tx, rx) = mpsc::channel::<Message<(), (), String>>();
        tx.send(Message::Progress(())).unwrap();
        drop(tx);
        let mut h = JobHandle {
            name: "model's worker".into(),
            control: Control::default(),
            rx,
            thread: None,
            finished: false,
        };
        let polled = h.poll();
        assert_eq!(polled.progress.len(), 1);
        assert_eq!(
            polled.done.map(|r| r.unwrap_err().to_string()),
            Some("the model's worker stopped unexpectedly".to_owned())
        );
    }

    #[test]
    fn dropping_a_running_handle_cancels_its_job() {
        let (tx, rx) = mpsc::channel();
        let h: JobHandle<(), ()> = JobHandle::spawn("drop", no_waker(), move |c, _| {
            while !c.is_cancelled() {
                std::thread::yield_now();
            }
            let _ = tx.send("cancelled");
            Ok(())
        })
        .unwrap();
        drop(h);
        assert_eq!(rx.recv(), Ok("cancelled"));
    }

    #[test]
    fn mapped_progress_feeds_the_same_sink() {
        let (p, rx) = Progress::<String>::channel();
        let step = p.map(|n: usize| format!("{n} done"));
        step.report(3);
        p.report("end".into());
        assert_eq!(rx.try_iter().collect::<Vec<_>>(), vec!["3 done", "end"]);
    }
}
