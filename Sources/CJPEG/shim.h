// libjpeg-turbo's TurboJPEG API: errors come back as return codes (the classic libjpeg API
// reports them by longjmp, which would skip Swift frames).
#include <turbojpeg.h>
