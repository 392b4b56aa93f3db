//! Unit tests for the packed cell: rotation, refunds, releases, saturation and the dead mark.

use super::*;

#[test]
fn state_round_trips_through_packing() {
    let state = WindowState {
        tag: 0xDEAD_BEEF,
        previous: COUNT_MAX,
        current: 7,
    };
    assert_eq!(WindowState::unpack(state.pack()), state);
    assert_ne!(state.pack(), DEAD);
}

#[test]
fn windows_rotate_and_reset() {
    let start = WindowState::unpack(0).add(10, 3);
    assert_eq!((start.tag, start.previous, start.current), (10, 0, 3));
    let same = start.add(10, 2);
    assert_eq!(same.current, 5);
    let next = same.add(11, 1);
    assert_eq!((next.previous, next.current), (5, 1));
    let much_later = next.add(20, 4);
    assert_eq!((much_later.previous, much_later.current), (0, 4));
    let clock_behind = much_later.add(19, 1);
    assert_eq!((clock_behind.tag, clock_behind.current), (20, 5));
}

#[test]
fn refunds_stay_in_their_window_and_never_go_below_zero() {
    let state = WindowState::unpack(0).add(10, 5);
    assert_eq!(state.refund(10, 2).current, 3);
    assert_eq!(state.refund(10, 9).current, 0);
    assert_eq!(
        state.refund(9, 2),
        state,
        "a refund for a window not held is ignored"
    );
    let rotated = state.add(11, 1);
    assert_eq!(
        rotated.refund(10, 2).previous,
        3,
        "the previous window gets its hits back"
    );
}

#[test]
fn releases_take_the_older_generation_first_and_never_go_below_zero() {
    let state = WindowState::unpack(0).add(10, 2).add(11, 3);
    assert_eq!((state.previous, state.current), (2, 3));
    let once = state.release(11, 1);
    assert_eq!((once.previous, once.current), (1, 3));
    let spill = once.release(11, 2);
    assert_eq!((spill.previous, spill.current), (0, 2));
    let drained = spill.release(11, 9);
    assert_eq!((drained.previous, drained.current), (0, 0));
    // A release in a later generation rotates first: leases two generations old are gone.
    let later = state.release(12, 1);
    assert_eq!((later.tag, later.previous, later.current), (12, 2, 0));
    let forgotten = state.release(13, 1);
    assert_eq!((forgotten.previous, forgotten.current), (0, 0));
}

#[test]
fn counts_saturate_without_wrapping() {
    let state = WindowState::unpack(0).add(1, u64::MAX).add(1, u64::MAX);
    assert_eq!(state.current, COUNT_MAX);
}

#[test]
fn tags_wrap_around_u32() {
    let fresh = WindowState {
        tag: u32::MAX,
        previous: 0,
        current: 0,
    };
    let state = fresh.add(u32::MAX, 2).add(0, 1);
    assert_eq!((state.tag, state.previous, state.current), (0, 2, 1));
    assert!(!state.expired_at(1));
    assert!(state.expired_at(2));
}

#[test]
fn a_dead_cell_refuses_updates() {
    let start = WindowState {
        tag: 5,
        previous: 0,
        current: 0,
    };
    let cell = Cell {
        state: AtomicU128::new(start.pack()),
        last_used: AtomicU64::new(0),
        expiry: Expiry::Window(Window::of(crate::engine::TimeUnit::Second)),
    };
    assert!(cell.apply(5, 1, Op::Add).is_some());
    assert!(
        !cell.kill_if_expired(Timestamp::from_secs(6)),
        "previous window still counts"
    );
    assert!(cell.kill_if_expired(Timestamp::from_secs(7)));
    assert_eq!(cell.apply(7, 1, Op::Add), None);
}
