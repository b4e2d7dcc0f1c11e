"""Files: audio in and out (`audio`), atomic writes (`atomic`), the command-line input grammar (`inputs`),
prepared corpora (`corpus`), the `.codes` format (`codes_file`) and file-to-file coding (`file_coding`)."""
