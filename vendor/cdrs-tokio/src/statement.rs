mod statement_params;
mod statement_params_builder;

pub use statement_params::*;
pub use statement_params_builder::*;
