//! `decide` runs on every request, so it must not allocate. This binary counts the current
//! thread's allocations around the calls; it holds one test so nothing else runs beside it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use covenant_core::consent::{
    Choice, ConsentRecord, ConsentState, ConsentSubject, Method, Signals, decide,
};
use covenant_core::policy::CookieCategory;
use time::macros::datetime;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

struct Counting;

// SAFETY: every call is passed straight to the system allocator; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|count| count.set(count.get() + 1));
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which we forward.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` above, i.e. from the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

#[test]
fn deciding_never_allocates() {
    let record = ConsentRecord {
        id: "r1".to_owned(),
        subject: ConsentSubject::Account(7),
        category: CookieCategory::Analytics,
        choice: Choice::Granted,
        method: Method::SettingsPage,
        policy_version: "2025.1".to_owned(),
        text_hash: "sha256:abc".to_owned(),
        recorded_at: datetime!(2025-03-01 12:00 UTC),
    };
    let state = ConsentState::from_records([&record]);
    let before = ALLOCATIONS.with(Cell::get);
    let mut allowed = 0;
    for signals in [
        Signals::default(),
        Signals {
            gpc: true,
            known_minor_under_16: true,
            restricted: false,
            objected: true,
        },
        Signals {
            restricted: true,
            ..Signals::default()
        },
    ] {
        for category in CookieCategory::ALL {
            allowed += usize::from(decide(&state, *category, signals).allowed);
        }
    }
    assert_eq!(ALLOCATIONS.with(Cell::get), before);
    assert_eq!(allowed, 4, "necessary three times, analytics once");
}
