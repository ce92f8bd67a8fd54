//! The names a federation definition gives its aggregation scheme and its input-validity
//! check, parsed once into enums, so no party matches them as strings.

use std::fmt;

/// How participants' vectors are summed (the definition's `aggregation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AggregationScheme {
    /// Secure aggregation (Bonawitz et al., CCS 2017, with the SecAgg+ neighbour graph of Bell
    /// et al., CCS 2020): the coordinator learns only the sum. Named `secagg`.
    SecAgg,
    /// Plain sums: the coordinator sees every participant's vector; a participant takes part
    /// only with its explicit consent (`allow_insecure_plain`). Named `insecure-plain`.
    InsecurePlain,
}

impl AggregationScheme {
    /// Every scheme, in the order they are listed to users.
    pub const ALL: [Self; 2] = [Self::SecAgg, Self::InsecurePlain];

    /// The scheme's name in configurations and the federation definition.
    pub const fn name(self) -> &'static str {
        match self {
            Self::SecAgg => "secagg",
            Self::InsecurePlain => "insecure-plain",
        }
    }

    /// The scheme named `name`; None for a name no party supports.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }
}

impl fmt::Display for AggregationScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What every participant proves about its masked input (the secure-aggregation parameters'
/// `input_validity`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InputValidity {
    /// Bulletproofs range proofs over Pedersen commitments that each value is within its
    /// bounds and the relations hold. Named `range-proofs`.
    RangeProofs,
    /// No proof: an honest participant's bounds are enforced by its own clipping only. Named
    /// `none`.
    None,
}

impl InputValidity {
    /// Every check, in the order they are listed to users.
    pub const ALL: [Self; 2] = [Self::RangeProofs, Self::None];

    /// The check's name in configurations and the federation definition.
    pub const fn name(self) -> &'static str {
        match self {
            Self::RangeProofs => "range-proofs",
            Self::None => "none",
        }
    }

    /// The check named `name`; None for a name no party supports.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }
}

impl fmt::Display for InputValidity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_none() {
        for scheme in AggregationScheme::ALL {
            assert_eq!(AggregationScheme::from_name(scheme.name()), Some(scheme));
        }
        for check in InputValidity::ALL {
            assert_eq!(InputValidity::from_name(check.name()), Some(check));
        }
        assert_eq!(AggregationScheme::from_name("secagg+"), None);
        assert_eq!(InputValidity::from_name("Range-Proofs"), None);
    }
}
