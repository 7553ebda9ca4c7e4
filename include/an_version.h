/* an_version.h: the anomalyd version ("0.1.0"); static string. */
#ifndef AN_VERSION_H
#define AN_VERSION_H
const char *an_version(void);
#endif
