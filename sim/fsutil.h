/* fsutil.h - small file-system helpers shared by the command line and the viewer.
 *
 * ew_mkdir_p creates a directory and its missing parents (like `mkdir -p`); 0 on success
 * (also when it exists), -1 with errno set otherwise (name too long: ENAMETOOLONG).
 */
#ifndef EW_FSUTIL_H
#define EW_FSUTIL_H

int ew_mkdir_p(const char *dir);

#endif
