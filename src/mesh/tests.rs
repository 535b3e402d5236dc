//! Unit tests of the parent module (the mesh on real glommio executors).

use super::*;
use glommio::{LocalExecutorPoolBuilder, PoolPlacement};
use std::time::Duration;

/// Runs `body` on `n` executors joined in one mesh whose handler answers `q * 10 + shard`,
/// after sleeping `delay_us` microseconds (so calls overlap), and collects each shard's
/// result.
fn on_mesh<T, F, Fut>(n: usize, capacity: usize, delay_us: u64, body: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(Rc<Mesh<u64, u64>>) -> Fut + Send + Clone + 'static,
    Fut: Future<Output = T> + 'static,
{
    let builders = MeshBuilders::<u64, u64>::new(n, capacity);
    let handles = LocalExecutorPoolBuilder::new(PoolPlacement::Unbound(n))
        .on_all_shards(move || async move {
            let mesh = builders.join().await.unwrap();
            let id = mesh.id() as u64;
            let handler: Handler<u64, u64> = Rc::new(move |q| {
                if delay_us == 0 && q % 2 == 0 {
                    // Even calls without a delay are answered at once, the rest by a task.
                    return Answer::Now(q * 10 + id);
                }
                Answer::Later(Box::pin(async move {
                    if delay_us > 0 {
                        glommio::timer::sleep(Duration::from_micros(delay_us)).await;
                    }
                    q * 10 + id
                }))
            });
            mesh.serve(handler);
            let out = body(Rc::clone(&mesh)).await;
            // Keep serving peers until every shard is done with its own calls.
            glommio::timer::sleep(Duration::from_millis(200)).await;
            out
        })
        .unwrap();
    handles.join_all().into_iter().map(|r| r.unwrap()).collect()
}

#[test]
fn call_reaches_the_owner_and_the_answer_comes_back() {
    let results = on_mesh(3, 16, 0, |mesh| async move {
        let me = mesh.id();
        let mut answers = Vec::new();
        for target in 0..3 {
            answers.push((target, mesh.call(target, 7).await.unwrap()));
        }
        assert_eq!(mesh.call(3, 1).await, Err(MeshError::NoSuchShard(3)));
        (me, answers)
    });
    assert_eq!(results.len(), 3);
    for (_, answers) in results {
        for (target, answer) in answers {
            assert_eq!(answer, 70 + target as u64);
        }
    }
}

#[test]
fn broadcast_reaches_every_shard_in_order() {
    let results = on_mesh(3, 16, 0, |mesh| async move {
        mesh.broadcast(|| 1, Duration::from_secs(5)).await
    });
    for answers in results {
        let answers: Vec<u64> = answers.into_iter().map(|a| a.unwrap()).collect();
        assert_eq!(answers, vec![10, 11, 12]);
    }
}

#[test]
fn a_call_past_its_deadline_times_out_here_and_on_a_peer() {
    // Handlers take 300 ms; a 30 ms deadline ends both calls long before that.
    let results = on_mesh(2, 16, 300_000, |mesh| async move {
        let me = mesh.id();
        let mut out = Vec::new();
        for target in [1 - me, me] {
            let started = Instant::now();
            let deadline = started + Duration::from_millis(30);
            let answer = mesh.call_until(target, 1, deadline).await;
            out.push((target, answer, started.elapsed()));
        }
        // A call answered in time is unaffected by its deadline.
        let far = Instant::now() + Duration::from_secs(5);
        out.push((me, mesh.call_until(me, 2, far).await, Duration::ZERO));
        out
    });
    for calls in results {
        for (target, answer, took) in &calls[..2] {
            assert_eq!(*answer, Err(MeshError::Timeout(*target)));
            assert!(*took >= Duration::from_millis(30), "{took:?}");
            assert!(*took < Duration::from_millis(250), "{took:?}");
        }
        let (me, answer, _) = &calls[2];
        assert_eq!(*answer, Ok(20 + *me as u64));
    }
}

#[test]
fn a_due_call_is_not_sent_and_short_deadlines_are_kept() {
    let results = on_mesh(2, 16, 300_000, |mesh| async move {
        let peer = 1 - mesh.id();
        let due = mesh.call_until(peer, 1, Instant::now()).await;
        // A 2 ms deadline, shorter than the sweep's longest sleep, is kept to within a
        // few ms (not rounded up to the next tick of a fixed period).
        let started = Instant::now();
        let short = mesh
            .call_until(peer, 1, started + Duration::from_millis(2))
            .await;
        (peer, due, short, started.elapsed())
    });
    for (peer, due, short, took) in results {
        assert_eq!(due, Err(MeshError::Timeout(peer)));
        assert_eq!(short, Err(MeshError::Timeout(peer)));
        assert!(took < Duration::from_millis(100), "{took:?}");
    }
}

#[test]
fn busy_shards_calling_each_other_do_not_deadlock() {
    // Tiny channels, slow handlers and every shard flooding every other shard at once: the
    // pattern that deadlocks when calls and replies share one bounded channel.
    let results = on_mesh(3, 2, 50, |mesh| async move {
        let tasks: Vec<_> = (0..600u64)
            .map(|i| {
                let mesh = Rc::clone(&mesh);
                glommio::spawn_local(async move {
                    let target = (i as usize) % mesh.shards();
                    mesh.call(target, i).await.map(|r| (i, target, r))
                })
            })
            .collect();
        let mut ok = 0;
        for t in tasks {
            let (i, target, r) = t.await.unwrap();
            assert_eq!(r, i * 10 + target as u64);
            ok += 1;
        }
        ok
    });
    assert_eq!(results, vec![600, 600, 600]);
}
