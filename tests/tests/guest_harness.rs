//! The guest harness's own check: `cargo xtask guest --expect-failure` boots the guest with
//! only this test and succeeds only if the guest reports the failure through QEMU's exit
//! status. `cargo xtask test` runs that self-check after the guest suite.

#[test]
#[ignore = "fails on purpose; run by `cargo xtask guest --expect-failure`"]
fn deliberately_fails_in_the_guest() {
    panic!("this test fails on purpose, to prove that a failing guest test fails the run");
}
