//! [`ModelError`]: why a model input was refused or a computation could not finish.
//!
//! Pure data; the HTTP layer (`crate::error`) maps it to a response, using
//! [`ModelError::status`] and [`ModelError::code`] so the mapping lives beside the meaning.

use thiserror::Error;

/// Why a model refused an input or could not produce a finite answer.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ModelError {
    /// The input is missing a field, has a field of the wrong type, an unknown field, or a
    /// value outside its documented range. HTTP 400.
    #[error("{path}: {message}")]
    Invalid {
        /// Where the problem is, from the request body's root: `input.holdings[2].prices`.
        path: String,
        /// What is wrong there, for a human.
        message: String,
    },
    /// Each field is within its documented schema, but fields disagree with each other in a
    /// way a JSON Schema cannot state: price series of different lengths, a duplicate symbol
    /// or debt name, weights that are all zero. HTTP 422, like the other semantic refusals.
    #[error("{path}: {message}")]
    Inconsistent {
        /// Where the problem is, from the request body's root.
        path: String,
        /// What disagrees, for a human.
        message: String,
    },
    /// The input is well-formed but asks for something impossible, e.g. a debt budget
    /// below the sum of the minimum payments. HTTP 422.
    #[error("{message}")]
    Unprocessable {
        /// The reason, for a human.
        message: String,
    },
    /// The computation produced a non-finite number (overflow, a degenerate system) for a
    /// valid input. It is deterministic in the input, so a retry cannot help: HTTP 422 as
    /// well, with its own error code so operators can tell it from a client mistake.
    #[error("numerical failure: {message}")]
    Numerical {
        /// What failed, for a human.
        message: String,
    },
}

impl ModelError {
    /// A 400 error at `path` with `message`.
    pub fn invalid(path: impl Into<String>, message: impl Into<String>) -> Self {
        ModelError::Invalid {
            path: path.into(),
            message: message.into(),
        }
    }

    /// A 422 error at `path`: fields that disagree with each other (see `Inconsistent`).
    pub fn inconsistent(path: impl Into<String>, message: impl Into<String>) -> Self {
        ModelError::Inconsistent {
            path: path.into(),
            message: message.into(),
        }
    }

    /// A 422 error with `message`.
    pub fn unprocessable(message: impl Into<String>) -> Self {
        ModelError::Unprocessable {
            message: message.into(),
        }
    }

    /// A numerical failure with `message`.
    pub fn numerical(message: impl Into<String>) -> Self {
        ModelError::Numerical {
            message: message.into(),
        }
    }

    /// The HTTP status this error maps to: 400 for `Invalid`, 422 otherwise.
    pub fn status(&self) -> u16 {
        match self {
            ModelError::Invalid { .. } => 400,
            ModelError::Inconsistent { .. }
            | ModelError::Unprocessable { .. }
            | ModelError::Numerical { .. } => 422,
        }
    }

    /// The machine-readable error code for the `{"error": {"code", ...}}` body.
    pub fn code(&self) -> &'static str {
        match self {
            ModelError::Invalid { .. } => "invalid_input",
            ModelError::Inconsistent { .. } => "inconsistent_input",
            ModelError::Unprocessable { .. } => "unprocessable_input",
            ModelError::Numerical { .. } => "numerical_failure",
        }
    }
}

/// `x` if it is finite, else a [`ModelError::Numerical`] naming `what`.
pub(crate) fn finite(what: &str, x: f64) -> Result<f64, ModelError> {
    if x.is_finite() {
        Ok(x)
    } else {
        Err(ModelError::numerical(format!("{what} is not finite")))
    }
}

/// Checks that every element of `xs` is finite.
pub(crate) fn all_finite(what: &str, xs: &[f64]) -> Result<(), ModelError> {
    if xs.iter().all(|x| x.is_finite()) {
        Ok(())
    } else {
        Err(ModelError::numerical(format!(
            "{what} has a non-finite value"
        )))
    }
}
