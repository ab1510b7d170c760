//! Zero-copy walking of Erlang `iodata()`.
//!
//! An iolist is flattened into a list of borrowed slices (binaries are not copied; runs of byte
//! integers are gathered into one scratch vector), so that `Writer::write_slices` can append the
//! whole thing as one atomic write.

use std::ops::Range;

use rustler::{Binary, Error, Term, TermType};

/// Limits for a walk on a normal scheduler: past either, the caller should go dirty.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    /// Most bytes in total.
    pub max_bytes: usize,
    /// Most list cells and binaries visited.
    pub max_items: usize,
}

impl Budget {
    /// No limits (dirty schedulers).
    pub const UNLIMITED: Budget = Budget { max_bytes: usize::MAX, max_items: usize::MAX };
}

enum Piece<'a> {
    Bin(&'a [u8]),
    Scratch(Range<usize>),
}

/// A flattened iodata term; borrows the binaries of the term it was built from.
pub struct IoData<'a> {
    pieces: Vec<Piece<'a>>,
    scratch: Vec<u8>,
    total: usize,
}

/// The result of [`walk`].
pub enum Walk<'a> {
    /// All of it, within budget.
    Done(IoData<'a>),
    /// The budget ran out: redo the walk on a dirty scheduler.
    OverBudget,
}

impl<'a> IoData<'a> {
    /// The slices, in order.
    pub fn slices(&self) -> Vec<&[u8]> {
        self.pieces
            .iter()
            .map(|p| match p {
                Piece::Bin(b) => *b,
                Piece::Scratch(r) => self.scratch.get(r.clone()).unwrap_or(&[]),
            })
            .collect()
    }

    fn push_bin(&mut self, b: &'a [u8]) {
        if !b.is_empty() {
            self.total += b.len();
            self.pieces.push(Piece::Bin(b));
        }
    }

    fn push_byte(&mut self, byte: u8) {
        let at = self.scratch.len();
        self.scratch.push(byte);
        self.total += 1;
        if let Some(Piece::Scratch(r)) = self.pieces.last_mut() {
            if r.end == at {
                r.end = at + 1;
                return;
            }
        }
        self.pieces.push(Piece::Scratch(at..at + 1));
    }
}

/// Where a term sits in the iolist: byte integers are only allowed as list elements.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pos {
    Top,
    Element,
    Tail,
}

/// Flattens `term` (a binary or an iolist, possibly improper with a binary tail).
///
/// Returns `Err(BadArg)` if it is not iodata (including bitstrings that are not whole bytes),
/// and `Ok(Walk::OverBudget)` as soon as the budget is exceeded.
pub fn walk<'a>(term: Term<'a>, budget: Budget) -> Result<Walk<'a>, Error> {
    let mut out = IoData { pieces: Vec::new(), scratch: Vec::new(), total: 0 };
    let mut items = 0usize;
    let mut stack: Vec<Term<'a>> = Vec::new();
    let mut cur = term;
    let mut pos = Pos::Top;
    loop {
        items += 1;
        if items > budget.max_items {
            return Ok(Walk::OverBudget);
        }
        match cur.get_type() {
            TermType::Binary => {
                let bin = Binary::from_term(cur)?;
                out.push_bin(bin.as_slice());
            }
            TermType::List => {
                if let Ok((head, tail)) = cur.list_get_cell() {
                    stack.push(tail);
                    cur = head;
                    pos = Pos::Element;
                    continue;
                }
                // `[]`: nothing to add, allowed anywhere.
            }
            TermType::Integer if pos == Pos::Element => {
                let v: i64 = cur.decode()?;
                let byte = u8::try_from(v).map_err(|_| Error::BadArg)?;
                out.push_byte(byte);
            }
            _ => return Err(Error::BadArg),
        }
        if out.total > budget.max_bytes {
            return Ok(Walk::OverBudget);
        }
        match stack.pop() {
            Some(t) => {
                cur = t;
                pos = Pos::Tail;
            }
            None => break,
        }
    }
    Ok(Walk::Done(out))
}
