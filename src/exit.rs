//! The process's exit codes, in one place (`sysexits.h` names where one fits).
//!
//! | code | meaning |
//! |---|---|
//! | 0 | clean stop (drained, or a signal and a drain within the deadline) |
//! | 1 | a fatal stage error, the shutdown deadline passed, or a command failed |
//! | 69 | `EX_UNAVAILABLE`: a service (or the daemon, for `status`; a relay, for `replay --from landing`) cannot be reached |
//! | 77 | `EX_NOPERM`: the daemon refused the status token |
//! | 78 | `EX_CONFIG`: the configuration is invalid (the message names the key or file) |
//! | 130 | a second SIGINT/SIGTERM during shutdown: exit at once (128 + SIGINT) |

use std::process::ExitCode;

/// Why the process exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Success,
    Failure,
    Unavailable,
    Unauthorized,
    Config,
    Interrupted,
}

impl Exit {
    /// The numeric code.
    pub const fn code(self) -> u8 {
        match self {
            Self::Success => 0,
            Self::Failure => 1,
            Self::Unavailable => 69,
            Self::Unauthorized => 77,
            Self::Config => 78,
            Self::Interrupted => 130,
        }
    }

    /// Ends the process now with this code (the second-signal path: nothing is flushed).
    pub fn now(self) -> ! {
        std::process::exit(i32::from(self.code()))
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_the_documented_ones() {
        let all = [
            (Exit::Success, 0),
            (Exit::Failure, 1),
            (Exit::Unavailable, 69),
            (Exit::Unauthorized, 77),
            (Exit::Config, 78),
            (Exit::Interrupted, 130),
        ];
        for (exit, code) in all {
            assert_eq!(exit.code(), code, "{exit:?}");
        }
    }
}
