/* simd.h - building hot loops for more than the baseline instruction set.
 *
 * Ferry is compiled for plain x86-64 (SSE2), so auto-vectorised loops get 4-wide vectors and no
 * fused multiply-add. Functions marked KERN_CLONES are compiled twice, for x86-64-v3 (AVX2,
 * FMA) and for the baseline, and the loader picks the version the CPU supports. Helpers they
 * call must be inlined into them (KERN_INLINE) to benefit.
 */
#ifndef ENGINE_KERNELS_SIMD_H
#define ENGINE_KERNELS_SIMD_H

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__)
#define KERN_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define KERN_CLONES
#endif

#define KERN_INLINE inline __attribute__((always_inline))

/* For functions made of many short copies (packing GEMM panels): stops GCC from turning each
 * copy loop into a call to memcpy or memset, which costs more than the copy for runs of a few
 * floats. */
#if defined(__GNUC__) && !defined(__clang__)
/* (An optimize attribute replaces the options of KERN_FAST_LOOPS, so it repeats them.) */
#define KERN_NO_LIBCALLS                                                                       \
    __attribute__((optimize("no-tree-loop-distribute-patterns", "fp-contract=fast",           \
                            "vect-cost-model=dynamic", "no-trapping-math")))
#else
#define KERN_NO_LIBCALLS
#endif

/* Placed once after a file's includes. GCC at -O2 only vectorises loops whose trip count is
 * known at compile time, which row loops over tensor dims never are; -std=c17 turns off fusing
 * multiply-adds; and with trapping math GCC will not vectorise the selects in clamps and
 * maxima. Floating-point exception flags are of no interest to Ferry. Clang needs none of it. */
#if defined(__GNUC__) && !defined(__clang__)
#define KERN_FAST_LOOPS                                                                        \
    _Pragma("GCC optimize(\"fp-contract=fast\")")                                             \
    _Pragma("GCC optimize(\"vect-cost-model=dynamic\")")                                      \
    _Pragma("GCC optimize(\"no-trapping-math\")")
#else
#define KERN_FAST_LOOPS
#endif

#endif
