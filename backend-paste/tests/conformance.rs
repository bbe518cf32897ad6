//! The backend conformance kit (`paste_rt_core::conformance`) run on the emulated PASTE port (paste-emu).

use paste_rt_core::conformance::Expect;
use paste_rt_core::PoolConfig;
use paste_rt_paste::PasteBackend;

fn make(pool: PoolConfig) -> PasteBackend {
    PasteBackend::emulated(pool).expect("the emulated PASTE port starts")
}

/// One enter per sync; per echoed request one TX slot, one RX slot and one TX reclaim.
const EXPECT: Expect =
    Expect { one_syscall_per_poll: true, max_submissions_per_request: 1.1, max_completions_per_request: 2.1 };

paste_rt_core::conformance_tests!(make, EXPECT);
