// Why decode_into_fresh faults each huge page at its end: times writing 64 MiB into fresh 2 MiB transparent
// huge pages in several orders (best of 12, milliseconds). Linux-only; not part of the build.
//   g++ -O2 -mavx2 native/tests/fresh_pages_bench.cpp -o fpb && ./fpb
// touch: page faults alone; st/nt: 32-byte regular/streaming stores front to back; *_touchend: each page
// faulted at its last line, then written front to back; st_touchbeg: faulted at its first byte.
#include <immintrin.h>
#include <sys/mman.h>
#include <cstring>
#include <cstdio>
#include <cstdint>
#include <chrono>
static const size_t N = 64ull<<20, H = 2ull<<20;
static uint8_t* fresh(){ void* b = mmap(0,N+H,PROT_READ|PROT_WRITE,MAP_PRIVATE|MAP_ANONYMOUS,-1,0);
 uintptr_t a=((uintptr_t)b+H-1)&~(H-1); madvise((void*)a,N,MADV_HUGEPAGE); return (uint8_t*)a; }
typedef void(*F)(uint8_t*,const uint8_t*);
__attribute__((noinline)) void f_memcpy(uint8_t*d,const uint8_t*s){ memcpy(d,s,N); }
__attribute__((noinline)) void f_touch(uint8_t*d,const uint8_t*s){ for(size_t j=0;j<N;j+=H) ((volatile uint8_t*)d)[j]=0; }
__attribute__((noinline)) void f_st(uint8_t*d,const uint8_t*s){ for(size_t i=0;i<N;i+=32) _mm256_store_si256((__m256i*)(d+i), _mm256_loadu_si256((const __m256i*)(s+i))); }
__attribute__((noinline)) void f_nt(uint8_t*d,const uint8_t*s){ for(size_t i=0;i<N;i+=32) _mm256_stream_si256((__m256i*)(d+i), _mm256_loadu_si256((const __m256i*)(s+i))); _mm_sfence(); }
__attribute__((noinline)) void f_st_touch(uint8_t*d,const uint8_t*s){ for(size_t j=0;j<N;j+=H){ ((volatile uint8_t*)d)[j+H-64]=0; for(size_t i=j;i<j+H;i+=32) _mm256_store_si256((__m256i*)(d+i), _mm256_loadu_si256((const __m256i*)(s+i)));} }
__attribute__((noinline)) void f_nt_touch(uint8_t*d,const uint8_t*s){ for(size_t j=0;j<N;j+=H){ ((volatile uint8_t*)d)[j+H-64]=0; for(size_t i=j;i<j+H;i+=32) _mm256_stream_si256((__m256i*)(d+i), _mm256_loadu_si256((const __m256i*)(s+i)));} _mm_sfence(); }
__attribute__((noinline)) void f_st_touchbeg(uint8_t*d,const uint8_t*s){ for(size_t j=0;j<N;j+=H){ ((volatile uint8_t*)d)[j]=0; for(size_t i=j;i<j+H;i+=32) _mm256_store_si256((__m256i*)(d+i), _mm256_loadu_si256((const __m256i*)(s+i)));} }
double tm(F f, const uint8_t* s){ double best=1e9; for(int r=0;r<12;r++){ uint8_t* d= fresh(); auto t0=std::chrono::steady_clock::now(); f(d,s); auto t1=std::chrono::steady_clock::now(); munmap(d,N); double t=std::chrono::duration<double>(t1-t0).count(); if(t<best)best=t;} return best; }
int main(){ uint8_t* s=fresh(); for(size_t i=0;i<N;i++) s[i]=(uint8_t)(i*2654435761u>>13);
 struct {const char*n;F f;} fs[]={{"touch",f_touch},{"memcpy",f_memcpy},{"st",f_st},{"nt",f_nt},{"st_touchend",f_st_touch},{"st_touchbeg",f_st_touchbeg},{"nt_touchend",f_nt_touch}};
 for(int rep=0;rep<3;rep++){ for(auto&x:fs) printf("%s %.2f  ",x.n,tm(x.f,s)*1e3); printf("\n");} }
