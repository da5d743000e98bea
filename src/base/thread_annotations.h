// Clang's thread-safety annotations (-Wthread-safety), as leveldb's
// port/thread_annotations.h spells them: GUARDED_BY on a member names the
// mutex that must be held to touch it, REQUIRES on a function the mutex its
// caller must hold, EXCLUDES one it must not. Under another compiler they
// expand to nothing; `make check-thread-safety` compiles every source with
// clang and fails on a violation.
#ifndef SILO_BASE_THREAD_ANNOTATIONS_H_
#define SILO_BASE_THREAD_ANNOTATIONS_H_

#if defined(__clang__)
#define SILO_THREAD_ANNOTATION_(x) __attribute__((x))
#else
#define SILO_THREAD_ANNOTATION_(x)
#endif

#define CAPABILITY(x) SILO_THREAD_ANNOTATION_(capability(x))
#define SCOPED_CAPABILITY SILO_THREAD_ANNOTATION_(scoped_lockable)
#define GUARDED_BY(x) SILO_THREAD_ANNOTATION_(guarded_by(x))
#define PT_GUARDED_BY(x) SILO_THREAD_ANNOTATION_(pt_guarded_by(x))
#define REQUIRES(...) SILO_THREAD_ANNOTATION_(requires_capability(__VA_ARGS__))
#define EXCLUDES(...) SILO_THREAD_ANNOTATION_(locks_excluded(__VA_ARGS__))
#define ACQUIRE(...) SILO_THREAD_ANNOTATION_(acquire_capability(__VA_ARGS__))
#define RELEASE(...) SILO_THREAD_ANNOTATION_(release_capability(__VA_ARGS__))
#define ASSERT_CAPABILITY(x) SILO_THREAD_ANNOTATION_(assert_capability(x))
#define NO_THREAD_SAFETY_ANALYSIS SILO_THREAD_ANNOTATION_(no_thread_safety_analysis)

#endif  // SILO_BASE_THREAD_ANNOTATIONS_H_
