//! Placeholder: XML helpers shared by the WMD and the BCD.
