//! Console input: bytes for the guest's COM1 receiver.
//!
//! Callers queue bytes without blocking ([`super::ConsoleInput::send`]); a
//! small thread feeds them to the UART. The UART's receive FIFO may take
//! fewer bytes than offered; the rest waits here and is offered again on a
//! short tick, so nothing is dropped while the VM runs.

use std::collections::VecDeque;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, select};

/// How often bytes the FIFO did not take are offered again.
const RETRY_TICK: Duration = Duration::from_millis(10);
/// Bytes kept waiting for the guest before new input is refused (with a
/// warning): a guest that never reads its console must not eat host memory.
const MAX_PENDING: usize = 1 << 20;

/// Where queued bytes go: returns how many of `bytes` it accepted.
pub type Sink = Box<dyn FnMut(&[u8]) -> usize + Send>;

/// The thread that feeds console input to the UART. Dropping it stops and
/// joins the thread.
pub struct ConsolePump {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ConsolePump {
    /// Feed bytes arriving on `input` to `sink` until dropped.
    pub fn spawn(input: Receiver<Vec<u8>>, sink: Sink) -> std::io::Result<Self> {
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
        let thread = std::thread::Builder::new()
            .name("console-in".into())
            .spawn(move || pump(input, stop_rx, sink))?;
        Ok(ConsolePump {
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }
}

impl Drop for ConsolePump {
    fn drop(&mut self) {
        // Disconnecting the stop channel wakes the thread.
        drop(self.stop.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            log::error!("console input thread panicked");
        }
    }
}

fn pump(input: Receiver<Vec<u8>>, stop: Receiver<()>, mut sink: Sink) {
    let mut pending: VecDeque<u8> = VecDeque::new();
    let mut input = Some(input);
    loop {
        let tick = if pending.is_empty() {
            crossbeam_channel::never()
        } else {
            crossbeam_channel::after(RETRY_TICK)
        };
        let input_rx = input.clone().unwrap_or_else(crossbeam_channel::never);
        select! {
            recv(stop) -> _ => return,
            recv(input_rx) -> bytes => match bytes {
                Ok(bytes) => queue(&mut pending, &bytes),
                // Every ConsoleInput is gone; finish what is pending.
                Err(_) => input = None,
            },
            recv(tick) -> _ => {}
        }
        // Take everything that is already waiting before offering it.
        if let Some(rx) = &input {
            while let Ok(bytes) = rx.try_recv() {
                queue(&mut pending, &bytes);
            }
        }
        offer(&mut pending, &mut sink);
        if input.is_none() && pending.is_empty() {
            // Nothing more can arrive; wait for the stop.
            let _ = stop.recv();
            return;
        }
    }
}

fn queue(pending: &mut VecDeque<u8>, bytes: &[u8]) {
    let room = MAX_PENDING.saturating_sub(pending.len());
    if bytes.len() > room {
        log::warn!(
            "console input: guest is not reading; dropping {} bytes",
            bytes.len() - room
        );
    }
    pending.extend(&bytes[..bytes.len().min(room)]);
}

fn offer(pending: &mut VecDeque<u8>, sink: &mut Sink) {
    while !pending.is_empty() {
        let (front, _) = pending.as_slices();
        let offered = front.len();
        let taken = sink(front).min(offered);
        pending.drain(..taken);
        if taken < offered {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A FIFO of `capacity` bytes that the "guest" drains on demand.
    #[derive(Default)]
    struct Fifo {
        capacity: usize,
        held: Vec<u8>,
        received: Vec<u8>,
    }

    impl Fifo {
        fn drain(&mut self) {
            let held = std::mem::take(&mut self.held);
            self.received.extend(held);
        }
    }

    fn sink(fifo: &Arc<Mutex<Fifo>>) -> Sink {
        let fifo = fifo.clone();
        Box::new(move |bytes: &[u8]| {
            let mut fifo = fifo.lock().unwrap();
            let n = bytes.len().min(fifo.capacity - fifo.held.len());
            fifo.held.extend_from_slice(&bytes[..n]);
            n
        })
    }

    fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(std::time::Instant::now() < deadline, "timed out: {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn bytes_the_fifo_refuses_are_offered_again_in_order() {
        let fifo = Arc::new(Mutex::new(Fifo {
            capacity: 4,
            ..Default::default()
        }));
        let (tx, rx) = crossbeam_channel::unbounded();
        let pump = ConsolePump::spawn(rx, sink(&fifo)).unwrap();
        tx.send(b"hello, ".to_vec()).unwrap();
        tx.send(b"world\n".to_vec()).unwrap();
        let message = b"hello, world\n";
        wait_until("all bytes delivered", || {
            let mut fifo = fifo.lock().unwrap();
            fifo.drain();
            fifo.received.len() == message.len()
        });
        assert_eq!(fifo.lock().unwrap().received, message);
        drop(pump);
    }

    #[test]
    fn stops_when_dropped_even_with_bytes_pending() {
        let fifo = Arc::new(Mutex::new(Fifo::default())); // takes nothing
        let (tx, rx) = crossbeam_channel::unbounded();
        let pump = ConsolePump::spawn(rx, sink(&fifo)).unwrap();
        tx.send(b"never read".to_vec()).unwrap();
        drop(pump); // joins; would hang if the thread ignored the stop
        assert!(
            tx.send(b"x".to_vec()).is_err(),
            "receiver gone with the thread"
        );
    }

    #[test]
    fn pending_input_is_bounded() {
        let mut pending = VecDeque::new();
        queue(&mut pending, &vec![1; MAX_PENDING - 1]);
        queue(&mut pending, &[2, 3, 4]);
        assert_eq!(pending.len(), MAX_PENDING);
        assert_eq!(pending.back(), Some(&2));
    }
}
