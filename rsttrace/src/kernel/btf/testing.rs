//! Builds BTF blobs for tests (here and in other modules): `Builder`, a
//! minimal writer of the records `parse` reads.

/// A minimal BTF writer: call the `add_*` methods, then `build`.
#[derive(Default)]
pub(crate) struct Builder {
    types: Vec<u8>,
    strings: Vec<u8>,
    next_id: u32,
}

impl Builder {
    pub(crate) fn new() -> Self {
        Builder {
            types: vec![],
            strings: vec![0],
            next_id: 1,
        }
    }

    fn str(&mut self, s: &str) -> u32 {
        if s.is_empty() {
            return 0;
        }
        let off = self.strings.len() as u32;
        self.strings.extend_from_slice(s.as_bytes());
        self.strings.push(0);
        off
    }

    fn header(&mut self, name: &str, kind: u32, vlen: u32, kind_flag: bool, size: u32) -> u32 {
        let name = self.str(name);
        let info = (u32::from(kind_flag) << 31) | (kind << 24) | vlen;
        for v in [name, info, size] {
            self.types.extend_from_slice(&v.to_le_bytes());
        }
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn word(&mut self, v: u32) {
        self.types.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn int(&mut self, name: &str, size: u32) -> u32 {
        let id = self.header(name, 1, 0, false, size);
        self.word(size * 8);
        id
    }

    pub(crate) fn ptr(&mut self, to: u32) -> u32 {
        self.header("", 2, 0, false, to)
    }

    pub(crate) fn typedef(&mut self, name: &str, to: u32) -> u32 {
        self.header(name, 8, 0, false, to)
    }

    pub(crate) fn array(&mut self, elem: u32, index: u32, n: u32) -> u32 {
        let id = self.header("", 3, 0, false, 0);
        self.word(elem);
        self.word(index);
        self.word(n);
        id
    }

    /// Members: (name, type, bit offset, bitfield size).
    pub(crate) fn composite(
        &mut self,
        union: bool,
        name: &str,
        size: u32,
        members: &[(&str, u32, u32, u32)],
    ) -> u32 {
        let bitfields = members.iter().any(|m| m.3 != 0);
        let kind = if union { 5 } else { 4 };
        let id = self.header(name, kind, members.len() as u32, bitfields, size);
        for &(m_name, m_type, bit_off, bits) in members {
            let off = self.str(m_name);
            self.word(off);
            self.word(m_type);
            self.word(if bitfields {
                (bits << 24) | bit_off
            } else {
                bit_off
            });
        }
        id
    }

    pub(crate) fn enumeration(&mut self, name: &str, values: &[(&str, i32)]) -> u32 {
        let id = self.header(name, 6, values.len() as u32, false, 4);
        for &(v_name, v) in values {
            let off = self.str(v_name);
            self.word(off);
            self.word(v as u32);
        }
        id
    }

    pub(crate) fn func_proto(&mut self, ret: u32, params: &[(&str, u32)]) -> u32 {
        let id = self.header("", 13, params.len() as u32, false, ret);
        for &(p_name, p_type) in params {
            let off = self.str(p_name);
            self.word(off);
            self.word(p_type);
        }
        id
    }

    /// A kernel function named `name` whose prototype is `proto`.
    pub(crate) fn func(&mut self, name: &str, proto: u32) -> u32 {
        self.header(name, 12, 0, false, proto)
    }

    pub(crate) fn build(&self) -> Vec<u8> {
        let mut out = vec![];
        out.extend_from_slice(&0xeb9fu16.to_le_bytes());
        out.push(1);
        out.push(0);
        let hdr_len = 24u32;
        for v in [
            hdr_len,
            0,
            self.types.len() as u32,
            self.types.len() as u32,
            self.strings.len() as u32,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&self.types);
        out.extend_from_slice(&self.strings);
        out
    }
}
