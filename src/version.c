/* version.c: the build's version string. */
#include "an_version.h"

const char *an_version(void) { return AN_VERSION; }
