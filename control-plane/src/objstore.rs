//! Object stores holding published bundles.
