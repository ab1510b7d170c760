//! loom models of the orderings between write, close, abort, read, ring recycling and the waits.
//!
//! Run with `make test-loom`, i.e. `RUSTFLAGS="--cfg bodypipe_loom" LOOM_MAX_PREEMPTIONS=3 cargo
//! test -p bodypipe --release --test loom_models` (in a target directory of its own, so the flag
//! does not invalidate the ordinary build). Under `cfg(bodypipe_loom)` the crate's `primitive` module swaps in loom's atomics, `Arc`, mutex,
//! `UnsafeCell` and a futex model that really blocks (a loom mutex + condvar that re-checks the
//! word under the lock), so a lost wake-up shows up as a loom deadlock, and a segment rewritten
//! while a reader can still see it shows up as a loom causality violation.
//!
//! Each model names the ordering it guards; the README's "Verification" section records which
//! deliberately weakened ordering each one caught.
#![cfg(bodypipe_loom)]

use bodypipe::{Builder, ReadError, Ready, Writability, WriteError};
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(3);
    }
    b.check(f);
}

/// Reads with blocking reads until EOF or an error; returns the bytes and the final error.
fn drain(r: &bodypipe::Reader, step: usize) -> (Vec<u8>, Option<ReadError>) {
    let mut out = Vec::new();
    let mut buf = vec![0u8; step];
    loop {
        match r.read_deadline(&mut buf, None) {
            Ok(0) => return (out, None),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => return (out, Some(e)),
        }
    }
}

/// Bytes arrive exactly and in order across segment boundaries, and a reader parked on an empty
/// pipe is woken by each write and by close. Guards: the Release store of `write_pos` (writer)
/// and Acquire loads (reader), which also publish the (Relaxed) segment links; the Dekker fences
/// of the wait.
#[test]
fn bytes_in_order() {
    model(|| {
        let (mut w, r) = Builder::new().segment_size(2).build().unwrap();
        let t = thread::spawn(move || {
            w.write(&[1, 2, 3]).unwrap();
            w.write(&[4]).unwrap();
            w.close().unwrap();
        });
        let (got, err) = drain(&r, 8);
        assert!(err.is_none());
        assert_eq!(got, [1, 2, 3, 4]);
        t.join().unwrap();
    });
}

/// A reader that sees EOF has seen every byte: `end` is stored with Release after the last
/// `write_pos`, and readers load `end` before `write_pos`. Uses non-blocking reads, so the only
/// thing that can make it fail is an early EOF.
#[test]
fn close_after_writes() {
    model(|| {
        let (mut w, r) = Builder::new().segment_size(4).build().unwrap();
        let t = thread::spawn(move || {
            w.write(&[7, 8]).unwrap();
            w.close().unwrap();
        });
        let mut got = Vec::new();
        let mut buf = [0u8; 4];
        loop {
            match r.try_read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(ReadError::WouldBlock) => thread::yield_now(),
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert_eq!(got, [7, 8], "EOF reported before all data");
        assert!(r.at_eof());
        t.join().unwrap();
    });
}

/// `at_eof` never says true while bytes are still coming (the same ordering, seen from the
/// polling API the reference documents).
#[test]
fn at_eof_not_early() {
    model(|| {
        let (mut w, r) = Builder::new().build().unwrap();
        let t = thread::spawn(move || {
            w.write(&[1]).unwrap();
            w.close().unwrap();
        });
        if r.at_eof() {
            // Every byte must be consumed for at_eof: none was read, so the write must be missing.
            panic!("at_eof before the byte was read");
        }
        t.join().unwrap();
        let mut buf = [0u8; 2];
        assert_eq!(r.try_read(&mut buf).unwrap(), 1);
        assert!(r.at_eof());
    });
}

/// A reader waiting for two bytes is woken by the write that makes them two, while the first
/// write, below its threshold, need not wake it (threshold wake-ups). The writer stays open, so
/// no end-of-stream wake can rescue a threshold the writer misses: that is a loom deadlock.
/// Guards: the comparison of the published position with the registered threshold in
/// `Signal::notify`, and the Dekker fences around the registration.
#[test]
fn wait_min_woken_at_threshold() {
    model(|| {
        let (mut w, r) = Builder::new().build().unwrap();
        let t = thread::spawn(move || {
            w.write(&[1]).unwrap();
            w.write(&[2]).unwrap();
            w
        });
        assert_eq!(r.wait(2, None), Ok(Ready::Data(2)));
        let w = t.join().unwrap();
        w.close().unwrap();
    });
}

/// An abort reaches a parked reader, after the data written before it, with the reason.
/// Guards: the reason written before the Release store of ABORTED; the wake in `finish`.
#[test]
fn abort_reaches_parked_reader() {
    model(|| {
        let (mut w, r) = Builder::new().build().unwrap();
        let t = thread::spawn(move || {
            w.write(&[9]).unwrap();
            w.abort("client disconnected");
        });
        let (got, err) = drain(&r, 4);
        assert_eq!(got, [9]);
        assert_eq!(err, Some(ReadError::Aborted { reason: "client disconnected".into() }));
        assert!(!r.at_eof(), "an aborted body never reaches EOF");
        t.join().unwrap();
    });
}

/// A close short of the declared length reaches a parked reader as an abort, never as EOF,
/// after the bytes written. Guards the same orderings as `abort_reaches_parked_reader`, through
/// `Writer::close`.
#[test]
fn short_close_reaches_parked_reader_as_abort() {
    model(|| {
        let (mut w, r) = Builder::new().content_length(3).build().unwrap();
        let t = thread::spawn(move || {
            w.write(&[9]).unwrap();
            w.close()
        });
        let (got, err) = drain(&r, 4);
        assert_eq!(got, [9]);
        let err = err.expect("a short body must surface as an error");
        assert_eq!(err, ReadError::Aborted { reason: bodypipe::INCOMPLETE_BODY.into() });
        assert_eq!(t.join().unwrap(), Err(bodypipe::CloseError::Incomplete { written: 1, expected: 3 }));
    });
}

/// Dropping the writer wakes a parked reader with an abort (no reader waits on a dead producer).
#[test]
fn writer_drop_wakes_reader() {
    model(|| {
        let (w, r) = Builder::new().build().unwrap();
        let t = thread::spawn(move || drop(w));
        let (got, err) = drain(&r, 4);
        assert!(got.is_empty());
        assert_eq!(err, Some(ReadError::Aborted { reason: "writer dropped".into() }));
        t.join().unwrap();
    });
}

/// Ring mode: the writer reuses retired segments while the reader keeps reading, and never
/// rewrites a byte the reader may still copy. With one-byte segments and a high-water mark of
/// three, the writer may write byte 4 having seen only the reader's first read, so the only thing
/// that orders the reader's copy out of a retired segment before the writer's reuse of it is the
/// free list's Release push / Acquire take (loom reports the reuse as a causality violation on
/// the segment's access cell when either is weakened). Guards: the Release push / Acquire take of the free
/// list, `Arc::get_mut`'s uniqueness check, the Release store of `read_pos` for the high-water
/// check, and the writer-side wait (`wait_writable`) not losing the reader's wake.
#[test]
fn ring_recycling() {
    model(|| {
        let (mut w, r) = Builder::new().segment_size(1).max_buffered(3).build().unwrap();
        let t = thread::spawn(move || {
            for b in 1..=4u8 {
                loop {
                    match w.write(&[b]) {
                        Ok(()) => break,
                        Err(WriteError::Full) => w.wait_writable(None).unwrap(),
                        Err(e) => panic!("unexpected {e}"),
                    }
                }
            }
            w.close().unwrap();
        });
        let (got, err) = drain(&r, 1);
        assert!(err.is_none());
        assert_eq!(got, [1, 2, 3, 4]);
        t.join().unwrap();
    });
}

/// The hand-over of a retired segment from reader to writer is ordered by the free list alone.
/// Two-byte segments read three bytes at a time: the read of bytes 4-6 copies byte 4 out of
/// segment 2 and retires that segment in the same call, after every reference count change on it
/// except the free-list push (and with no fence in between), and a high-water mark of 8 lets the
/// writer take it without waiting for any read. Weakening the push (Release) or the take
/// (Acquire) lets loom rewrite the segment under that read.
#[test]
fn ring_free_list_handover() {
    model(|| {
        let (mut w, r) = Builder::new().segment_size(2).max_buffered(8).build().unwrap();
        let t = thread::spawn(move || {
            for b in [[1u8, 2], [3, 4], [5, 6], [7, 8]] {
                w.write(&b).unwrap();
            }
            w.close().unwrap();
        });
        let (got, err) = drain(&r, 3);
        assert!(err.is_none());
        assert_eq!(got, [1, 2, 3, 4, 5, 6, 7, 8]);
        t.join().unwrap();
    });
}

/// Ring mode: `try_read_views` moves the cursor, retiring the segments it passed, before the
/// caller reads the views, and the writer may meanwhile fill the room that frees; it must never
/// rewrite a segment a view still shows. With one-byte segments and a high-water mark of two the
/// writer wants those retired segments back at once; only the views' references keep it off them
/// (`Writer::recycle`'s `Arc::get_mut`, which the views' drops release to). A recycling not
/// ordered after the view's read is a causality violation on the segment's access cell, and a
/// rewritten byte fails the assertion.
#[test]
fn ring_views_pin_taken_segments() {
    model(|| {
        let (mut w, r) = Builder::new().segment_size(1).max_buffered(2).build().unwrap();
        let t = thread::spawn(move || {
            for b in 1..=4u8 {
                loop {
                    match w.write(&[b]) {
                        Ok(()) => break,
                        Err(WriteError::Full) => w.wait_writable(None).unwrap(),
                        Err(e) => panic!("unexpected {e}"),
                    }
                }
            }
            w.close().unwrap();
        });
        let mut got = Vec::new();
        loop {
            match r.try_read_views(1, 2) {
                Ok(views) if views.is_empty() => break,
                Ok(views) => {
                    // The cursor is already past these bytes: only the views pin them.
                    for v in &views {
                        got.extend_from_slice(v);
                    }
                }
                Err(ReadError::WouldBlock) => {
                    r.wait(1, None).unwrap();
                }
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert_eq!(got, [1, 2, 3, 4]);
        t.join().unwrap();
    });
}

/// Dropping the reader cuts the chain of segment links while the writer may be linking new
/// segments after its tail, and a view outlives both: the view still shows its bytes, and every
/// link is taken exactly once (a segment freed twice or used after free is a loom error).
#[test]
fn reader_drop_cuts_chain_while_writer_links() {
    model(|| {
        let (mut w, r) = Builder::new().segment_size(1).build().unwrap();
        w.write(&[1]).unwrap();
        let view = r.views().remove(0);
        let t = thread::spawn(move || {
            // Links two segments after the tail, unless the reader's close is seen first.
            let _ = w.write(&[2, 3]);
            w
        });
        drop(r);
        let w = t.join().unwrap();
        assert_eq!(&*view, [1]);
        drop(w);
        drop(view);
    });
}

/// A writable callback armed while the reader frees room fires exactly once, whichever side
/// sees the other first. Guards: the Dekker pair between `arm_hook` and `after_read`.
#[test]
fn on_writable_fires_once() {
    model(|| {
        let (mut w, r) = Builder::new().max_buffered(2).build().unwrap();
        w.write(&[1, 2]).unwrap();
        let fired = Arc::new(AtomicUsize::new(0));
        let reader = thread::spawn(move || {
            let mut buf = [0u8; 2];
            assert_eq!(r.try_read(&mut buf).unwrap(), 2);
            r
        });
        let f = fired.clone();
        w.on_writable(move |why| {
            assert_eq!(why, Writability::Writable);
            f.fetch_add(1, Ordering::Relaxed);
        });
        let r = reader.join().unwrap();
        assert_eq!(fired.load(Ordering::Relaxed), 1, "callback lost or fired twice");
        drop(r);
        drop(w);
    });
}

/// A readable callback (an event loop's wake-up) armed while the writer publishes fires exactly
/// once, whichever side sees the other first. Guards: the Dekker pair between `arm_readable` and
/// `after_write` (the writer's fence in `Signal::notify`, the reader's fence in `OneShot::arm`).
#[test]
fn on_readable_fires_once() {
    model(|| {
        let (mut w, r) = Builder::new().build().unwrap();
        let fired = Arc::new(AtomicUsize::new(0));
        let writer = thread::spawn(move || {
            w.write(&[1]).unwrap();
            w
        });
        let f = fired.clone();
        r.on_readable(move || {
            f.fetch_add(1, Ordering::Relaxed);
        });
        let w = writer.join().unwrap();
        assert_eq!(fired.load(Ordering::Relaxed), 1, "readable callback lost or fired twice");
        w.close().unwrap();
    });
}

/// A callback with a threshold fires once the threshold is reached, exactly once, even though
/// the writer's first write makes it not yet due (the async `areadexactly` path).
#[test]
fn on_readable_min_fires_once_at_threshold() {
    model(|| {
        let (mut w, r) = Builder::new().build().unwrap();
        let fired = Arc::new(AtomicUsize::new(0));
        let writer = thread::spawn(move || {
            w.write(&[1]).unwrap();
            w.write(&[2]).unwrap();
            w
        });
        let f = fired.clone();
        r.on_readable_min(2, move || {
            f.fetch_add(1, Ordering::Relaxed);
        });
        let w = writer.join().unwrap();
        assert_eq!(fired.load(Ordering::Relaxed), 1, "threshold callback lost or fired twice");
        assert_eq!(r.buffered(), 2);
        w.close().unwrap();
    });
}

/// Two subscriptions with different thresholds, armed while the writer publishes: the one the
/// write meets fires exactly once, the other not until the end (each entry has its own
/// threshold; the list's minimum is lowered under its lock, before the arming fence).
#[test]
fn on_readable_min_thresholds_are_per_entry() {
    model(|| {
        let (mut w, r) = Builder::new().build().unwrap();
        let a = Arc::new(AtomicUsize::new(0));
        let b = Arc::new(AtomicUsize::new(0));
        let writer = thread::spawn(move || {
            w.write(&[1]).unwrap();
            w
        });
        let fa = a.clone();
        r.on_readable_min(3, move || {
            fa.fetch_add(1, Ordering::Relaxed);
        });
        let fb = b.clone();
        r.on_readable_min(1, move || {
            fb.fetch_add(1, Ordering::Relaxed);
        });
        let w = writer.join().unwrap();
        assert_eq!(b.load(Ordering::Relaxed), 1, "the met threshold's callback lost or fired twice");
        assert_eq!(a.load(Ordering::Relaxed), 0, "fired below its threshold");
        w.close().unwrap();
        assert_eq!(a.load(Ordering::Relaxed), 1, "the end fires it");
    });
}

/// Register versus publish, with two subscribers (two wrappers of one reader, or two event
/// loops) arming from two threads while the writer publishes: both fire, each exactly once.
/// One slot per reader would lose one of them (the hang in issue 12).
#[test]
fn two_subscribers_both_fire() {
    model(|| {
        let (mut w, r) = Builder::new().build().unwrap();
        let r = Arc::new(r);
        let a = Arc::new(AtomicUsize::new(0));
        let b = Arc::new(AtomicUsize::new(0));
        let writer = thread::spawn(move || {
            w.write(&[1]).unwrap();
            w
        });
        let other = {
            let (r, b) = (r.clone(), b.clone());
            thread::spawn(move || {
                r.on_readable(move || {
                    b.fetch_add(1, Ordering::Relaxed);
                });
            })
        };
        let fa = a.clone();
        r.on_readable(move || {
            fa.fetch_add(1, Ordering::Relaxed);
        });
        other.join().unwrap();
        let w = writer.join().unwrap();
        assert_eq!((a.load(Ordering::Relaxed), b.load(Ordering::Relaxed)), (1, 1), "a subscriber lost or fired twice");
        drop(w);
    });
}

/// Cancel versus fire: a subscription cancelled while the write that makes it due is published
/// either fires (and the cancel says false) or is cancelled (and never fires, not even at the
/// end), never both and never neither.
#[test]
fn cancel_vs_fire() {
    model(|| {
        let (mut w, r) = Builder::new().build().unwrap();
        let fired = Arc::new(AtomicUsize::new(0));
        let f = fired.clone();
        let sub = r.on_readable(move || {
            f.fetch_add(1, Ordering::Relaxed);
        });
        let writer = thread::spawn(move || {
            w.write(&[1]).unwrap();
            w
        });
        let cancelled = r.cancel_readable(sub);
        let w = writer.join().unwrap();
        assert_eq!(fired.load(Ordering::Relaxed) + usize::from(cancelled), 1);
        w.close().unwrap();
        assert_eq!(fired.load(Ordering::Relaxed) + usize::from(cancelled), 1, "fired after a cancel");
    });
}

/// A blocking `read_line` sees a newline that lands between its scan and its wait: it waits for
/// bytes beyond what its scan saw, not for one more than it finds unread afterwards.
#[test]
fn read_line_sees_late_newline() {
    model(|| {
        let (mut w, r) = Builder::new().build().unwrap();
        let r = Arc::new(r);
        w.write(b"a").unwrap();
        let r2 = r.clone();
        let reader = thread::spawn(move || {
            let mut out = Vec::new();
            r2.read_line_deadline(&mut out, None, None).unwrap();
            out
        });
        w.write(b"\n").unwrap();
        assert_eq!(reader.join().unwrap(), b"a\n"); // the writer is still open: no EOF rescue
        drop(w);
    });
}

/// Counts wake-ups of an async task.
struct WakeCount(AtomicUsize);

impl std::task::Wake for WakeCount {
    fn wake(self: std::sync::Arc<Self>) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// An async producer (`Writer::poll_writable`) that gets `Pending` while the reader frees the
/// ring is woken, exactly once, and then finds room. Guards: the writable list's Dekker pair
/// (the fence in `ReadyList::arm` and the reader's in `Signal::notify`).
#[test]
fn poll_writable_woken() {
    model(|| {
        let (mut w, r) = Builder::new().max_buffered(2).build().unwrap();
        w.write(&[1, 2]).unwrap();
        let reader = thread::spawn(move || {
            let mut buf = [0u8; 2];
            assert_eq!(r.try_read(&mut buf), Ok(2));
            r
        });
        let woken = std::sync::Arc::new(WakeCount(AtomicUsize::new(0)));
        let waker = std::task::Waker::from(woken.clone());
        let mut cx = std::task::Context::from_waker(&waker);
        let first = w.poll_writable(&mut cx);
        let r = reader.join().unwrap();
        if first.is_pending() {
            assert_eq!(woken.0.load(Ordering::Relaxed), 1, "pending and never woken (or woken twice)");
        }
        assert_eq!(w.poll_writable(&mut cx), std::task::Poll::Ready(Ok(())));
        drop(r);
        drop(w);
    });
}

/// Closing the reader wakes a writer waiting for room, which then gets `ReaderClosed`.
#[test]
fn reader_close_wakes_writer() {
    model(|| {
        let (mut w, r) = Builder::new().max_buffered(1).build().unwrap();
        w.write(&[1]).unwrap();
        let t = thread::spawn(move || r.close());
        assert_eq!(w.wait_writable(None), Err(bodypipe::WaitWritableError::ReaderClosed));
        assert_eq!(w.write(&[2]), Err(WriteError::Closed));
        t.join().unwrap();
    });
}

/// Segments linked by one write are fully initialised when a reader follows the links: views
/// taken concurrently with a write spanning three new segments show exactly the published bytes.
/// Guards: the `write_pos` Release/Acquire pair, which is what publishes the Relaxed links
/// (`Segment::link`/`next`, `publish_head`/`head`) and the segments behind them.
#[test]
fn segment_publication() {
    model(|| {
        let (mut w, r) = Builder::new().segment_size(1).build().unwrap();
        let t = thread::spawn(move || {
            w.write(&[5, 6, 7]).unwrap();
            w
        });
        let views = r.views();
        let seen: Vec<u8> = views.iter().flat_map(|v| v.iter().copied()).collect();
        assert!(seen.is_empty() || seen == [5, 6, 7], "torn or uninitialised view: {seen:?}");
        let mut buf = [0u8; 3];
        let n = match r.try_read(&mut buf) {
            Ok(n) => n,
            Err(ReadError::WouldBlock) => 0,
            Err(e) => panic!("unexpected {e}"),
        };
        assert!(n == 0 || buf == [5, 6, 7]);
        let w = t.join().unwrap();
        w.close().unwrap();
    });
}

/// Any thread that sees the read position also sees at least that many bytes written: the
/// reader stores `read_pos` with Release after an Acquire load of `write_pos`, and queries load
/// `read_pos` (Acquire) before `write_pos`. Guards `available`, `at_eof` and `Stats`.
#[test]
fn queries_consistent() {
    model(|| {
        let (mut w, r) = Builder::new().build().unwrap();
        let r = Arc::new(r);
        let reader = {
            let r = r.clone();
            thread::spawn(move || {
                let mut buf = [0u8; 1];
                let _ = r.try_read(&mut buf);
            })
        };
        let writer = thread::spawn(move || {
            w.write(&[1]).unwrap();
            w
        });
        let read = r.position();
        let written = r.written();
        assert!(read <= written, "saw read position {read} beyond written {written}");
        reader.join().unwrap();
        writer.join().unwrap().close().unwrap();
    });
}
