//! The test signatures: which bytes, where, in which family. The tables here are what the
//! classifier's fast path and the filter's masks are built from.

use core::fmt;

use crate::wire::sig_const;

/// Which test signature a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Signature {
    /// ITO `PROBEOT`.
    ProbeOt,
    /// ITO `DATA:OT`.
    DataOt,
    /// ITO `LATENCY`.
    Latency,
    /// `RFC2544` at offset 0.
    Rfc2544,
    /// `Y.1564 ` at offset 0.
    Y1564,
    /// A user-defined signature.
    Custom,
    /// A STAMP / TWAMP-Light test packet (recognised by its UDP port, not by bytes).
    Stamp,
}

impl Signature {
    /// Number of signatures (the length of per-signature counter arrays).
    pub const COUNT: usize = 7;
    /// Every signature, in counter order.
    pub const ALL: [Signature; Self::COUNT] = [
        Signature::ProbeOt,
        Signature::DataOt,
        Signature::Latency,
        Signature::Rfc2544,
        Signature::Y1564,
        Signature::Custom,
        Signature::Stamp,
    ];

    /// Stable name used as a JSON key and metric label.
    pub fn name(self) -> &'static str {
        match self {
            Signature::ProbeOt => "probeot",
            Signature::DataOt => "data_ot",
            Signature::Latency => "latency",
            Signature::Rfc2544 => "rfc2544",
            Signature::Y1564 => "y1564",
            Signature::Custom => "custom",
            Signature::Stamp => "stamp",
        }
    }

    /// The family the signature belongs to.
    pub fn family(self) -> Family {
        match self {
            Signature::ProbeOt | Signature::DataOt | Signature::Latency => Family::Ito,
            Signature::Rfc2544 => Family::Rfc2544,
            Signature::Y1564 => Family::Y1564,
            Signature::Custom => Family::Custom,
            Signature::Stamp => Family::Stamp,
        }
    }

    /// The 7 signature bytes of a built-in signature (`None` for custom ones and STAMP).
    pub fn bytes(self) -> Option<&'static [u8; 7]> {
        match self {
            Signature::ProbeOt => Some(b"PROBEOT"),
            Signature::DataOt => Some(b"DATA:OT"),
            Signature::Latency => Some(b"LATENCY"),
            Signature::Rfc2544 => Some(b"RFC2544"),
            Signature::Y1564 => Some(b"Y.1564 "),
            Signature::Custom | Signature::Stamp => None,
        }
    }

    /// Offset of a built-in signature in the UDP payload (`None` for custom ones and STAMP).
    pub fn offset(self) -> Option<usize> {
        match self.family() {
            Family::Ito => Some(ITO_SIGNATURE_OFFSET),
            Family::Rfc2544 | Family::Y1564 => Some(0),
            Family::Custom | Family::Stamp => None,
        }
    }
}

// `Hit::signature` maps an index to the signature declared at it.
const _: () = {
    let mut i = 0;
    while i < Signature::COUNT {
        assert!(Signature::ALL[i] as usize == i);
        i += 1;
    }
};

/// The ITO signature follows a 5-byte header in the UDP payload.
pub(crate) const ITO_SIGNATURE_OFFSET: usize = 5;

/// A family of signatures that can be switched on and off together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// NetAlly / Fluke / NETSCOUT: `PROBEOT`, `DATA:OT`, `LATENCY` at payload offset 5.
    Ito,
    /// RFC 2544 testers: `RFC2544` at offset 0.
    Rfc2544,
    /// Y.1564 testers: `Y.1564 ` at offset 0.
    Y1564,
    /// User-defined signatures.
    Custom,
    /// STAMP (RFC 8762) and TWAMP-Light (RFC 5357) test packets to the STAMP port, answered
    /// with timestamps.
    Stamp,
}

impl Family {
    /// Every family, in matching order (STAMP is decided by the port, before any signature).
    pub const ALL: [Family; 5] = [Family::Ito, Family::Rfc2544, Family::Y1564, Family::Custom, Family::Stamp];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Family::Ito => "ito",
            Family::Rfc2544 => "rfc2544",
            Family::Y1564 => "y1564",
            Family::Custom => "custom",
            Family::Stamp => "stamp",
        }
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// A set of [`Family`] values.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct FamilySet(u8);

impl FamilySet {
    /// No family.
    pub const EMPTY: FamilySet = FamilySet(0);

    /// Just `family`.
    pub fn only(family: Family) -> Self {
        FamilySet(family.bit())
    }

    /// Adds `family`.
    pub fn insert(&mut self, family: Family) {
        self.0 |= family.bit();
    }

    /// True when `family` is in the set.
    #[inline(always)]
    pub fn contains(self, family: Family) -> bool {
        self.0 & family.bit() != 0
    }

    /// True when the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The families in the set, in matching order.
    pub fn iter(self) -> impl Iterator<Item = Family> {
        Family::ALL.into_iter().filter(move |f| self.contains(*f))
    }
}

impl fmt::Debug for FamilySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter().map(Family::name)).finish()
    }
}

impl fmt::Display for FamilySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, family) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(family.name())?;
        }
        Ok(())
    }
}

/// The ITO signatures by bits 2..5 of their first byte ('P' 4, 'D' 1, 'L' 3); `u64::MAX`
/// (never a 7-byte value) elsewhere.
pub(crate) const ITO_BY_SLOT: [u64; 8] = {
    let mut t = [u64::MAX; 8];
    t[(b'P' >> 2 & 7) as usize] = sig_const(b"PROBEOT");
    t[(b'D' >> 2 & 7) as usize] = sig_const(b"DATA:OT");
    t[(b'L' >> 2 & 7) as usize] = sig_const(b"LATENCY");
    t
};
/// Their indices in [`Signature::ALL`], by the same slots.
pub(crate) const ITO_INDEX_BY_SLOT: [u8; 8] = {
    let mut t = [0; 8];
    t[(b'D' >> 2 & 7) as usize] = Signature::DataOt as u8;
    t[(b'L' >> 2 & 7) as usize] = Signature::Latency as u8;
    t
};
