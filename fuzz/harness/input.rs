//! Reading a fuzzer's bytes as decisions: numbers, flags, byte strings, and the
//! "split points then stream" shape the parser harnesses use. Exhausted input reads
//! as zeros, so every byte string is a valid input.

/// A cursor over the fuzzer's bytes.
pub struct Input<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Input<'a> {
    /// Reads from the start of `data`.
    pub fn new(data: &'a [u8]) -> Input<'a> {
        Input { data, pos: 0 }
    }

    /// The next byte (0 once exhausted).
    pub fn u8(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    /// The next two bytes, little-endian.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    /// The next four bytes, little-endian.
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            self.u16() as usize % n
        }
    }

    /// Whether bytes are left.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }

    /// Up to `n` of the next bytes.
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let start = self.pos.min(self.data.len());
        let end = (start + n).min(self.data.len());
        self.pos = start + n;
        &self.data[start..end]
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        let start = self.pos.min(self.data.len());
        self.pos = self.data.len();
        &self.data[start..]
    }
}

/// Splits `data` as `split_then_stream` encoded it: a count (mod 8), that many
/// 16-bit positions, then the stream. Returns the stream and its chunks.
pub fn chunks(data: &[u8]) -> (&[u8], Vec<&[u8]>) {
    let mut input = Input::new(data);
    let k = input.u8() as usize % 8;
    let mut cuts: Vec<u16> = (0..k).map(|_| input.u16()).collect();
    let stream = input.rest();
    let mut cuts: Vec<usize> = cuts.drain(..).map(|c| c as usize % (stream.len() + 1)).collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut out = Vec::with_capacity(cuts.len() + 1);
    let mut at = 0;
    for c in cuts {
        out.push(&stream[at..c]);
        at = c;
    }
    out.push(&stream[at..]);
    (stream, out)
}

/// The input [`chunks`] reads back as `stream` cut at `cuts` (at most 7 kept).
pub fn split_then_stream(stream: &[u8], cuts: &[u16]) -> Vec<u8> {
    let cuts = &cuts[..cuts.len().min(7)];
    let mut data = vec![cuts.len() as u8];
    for c in cuts {
        data.extend_from_slice(&c.to_le_bytes());
    }
    data.extend_from_slice(stream);
    data
}
