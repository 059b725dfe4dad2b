//! Gradient-flow analysis: spectra of `W_hh`, per-distance gradient profiles, Jacobian products.

pub mod spectrum;
