//! A single-use, shard-local reply slot: one side fills it once, the other awaits it.
//!
//! Not `Send` and lock-free by construction (`Rc` + `RefCell` on one executor thread); the
//! mesh, the single-flight followers and the batch queues hand results back through it.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

struct Inner<T> {
    value: Option<T>,
    waker: Option<Waker>,
    closed: bool,
}

/// The filling side. Dropping it without sending closes the slot: the receiver gets `None`.
pub struct Sender<T> {
    inner: Rc<RefCell<Inner<T>>>,
}

/// The awaiting side: resolves to `Some(value)`, or `None` if the sender was dropped unused.
pub struct Receiver<T> {
    inner: Rc<RefCell<Inner<T>>>,
}

/// A new slot.
pub fn channel<T>() -> (Sender<T>, Receiver<T>) {
    let inner = Rc::new(RefCell::new(Inner {
        value: None,
        waker: None,
        closed: false,
    }));
    (
        Sender {
            inner: Rc::clone(&inner),
        },
        Receiver { inner },
    )
}

impl<T> Sender<T> {
    /// Fills the slot and wakes the receiver. A receiver that is gone is not an error.
    pub fn send(self, value: T) {
        let waker = {
            let mut inner = self.inner.borrow_mut();
            inner.value = Some(value);
            inner.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let waker = {
            let mut inner = self.inner.borrow_mut();
            inner.closed = true;
            inner.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> Future for Receiver<T> {
    type Output = Option<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut inner = self.inner.borrow_mut();
        if let Some(v) = inner.value.take() {
            return Poll::Ready(Some(v));
        }
        if inner.closed {
            return Poll::Ready(None);
        }
        inner.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivers_once_or_reports_a_dropped_sender() {
        futures_lite::future::block_on(async {
            let (tx, rx) = channel();
            tx.send(5);
            assert_eq!(rx.await, Some(5));
            let (tx, rx) = channel::<u8>();
            drop(tx);
            assert_eq!(rx.await, None);
        });
    }
}
