//! A cursor over one message: nom's number and byte parsers behind small methods that remember
//! where in the message they are, so every error can carry its byte offset.

use nom::bytes::complete::take;
use nom::number::complete::{be_u16, be_u32, be_u8};
use nom::IResult;
use std::net::Ipv4Addr;

type NomError<'a> = nom::error::Error<&'a [u8]>;

/// Reads a field from the front of a slice that belongs to one message.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reader<'a> {
    /// The whole message; `rest` always lies inside it.
    msg: &'a [u8],
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over the whole message.
    pub(crate) fn new(msg: &'a [u8]) -> Self {
        Reader { msg, rest: msg }
    }

    /// A reader over `part`, a sub-slice of this reader's message (an attribute value, say),
    /// that still reports offsets from the start of the message.
    pub(crate) fn sub(&self, part: &'a [u8]) -> Self {
        Reader {
            msg: self.msg,
            rest: part,
        }
    }

    /// Offset of the next unread byte from the start of the message.
    pub(crate) fn offset(&self) -> usize {
        offset_in(self.msg, self.rest)
    }

    pub(crate) fn rest(&self) -> &'a [u8] {
        self.rest
    }

    pub(crate) fn remaining(&self) -> usize {
        self.rest.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn run<T>(&mut self, r: IResult<&'a [u8], T, NomError<'a>>) -> Option<T> {
        let (rest, v) = r.ok()?;
        self.rest = rest;
        Some(v)
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.run(be_u8(self.rest))
    }

    pub(crate) fn u16(&mut self) -> Option<u16> {
        self.run(be_u16(self.rest))
    }

    pub(crate) fn u32(&mut self) -> Option<u32> {
        self.run(be_u32(self.rest))
    }

    pub(crate) fn ipv4(&mut self) -> Option<Ipv4Addr> {
        self.u32().map(Ipv4Addr::from)
    }

    /// The next `n` bytes, or None (and nothing consumed) when fewer remain.
    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        self.run(take(n)(self.rest))
    }

    /// Everything left.
    pub(crate) fn take_rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.rest)
    }
}

/// Offset of `part` inside `whole` (0 if it is not inside, which callers never do).
pub(crate) fn offset_in(whole: &[u8], part: &[u8]) -> usize {
    (part.as_ptr() as usize).saturating_sub(whole.as_ptr() as usize)
}
