//! Dead letters: records that cannot be delivered go to their own topic, with headers that
//! say why.

pub(crate) mod config;
