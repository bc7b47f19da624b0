#include <cblas.h>
/* OpenBLAS's DYNAMIC_ARCH entry points: exported by Debian's build but not in cblas.h.
   Quitting and re-initialising lets the engine replace a Prescott fallback with the
   best kernels the CPU supports before any BLAS call is made. */
extern void gotoblas_dynamic_init(void);
extern void gotoblas_dynamic_quit(void);
extern char *openblas_get_corename(void);
extern void openblas_set_num_threads(int);
extern int openblas_get_num_threads(void);
/* Thread server controls, also exported: re-reading the environment and restarting the
   server is how the engine shortens the workers' busy-wait (OPENBLAS_THREAD_TIMEOUT). */
extern void openblas_read_env(void);
extern int blas_thread_init(void);
extern int blas_thread_shutdown_(void);
